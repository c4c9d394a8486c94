#!/usr/bin/env bash
# Create ./.venv with HAT and every extra (train, ray, onnx, plots, test).
# Usage: bash scripts/setup_venv.sh [VENV_DIR]
# torch is installed first from constraints.txt (a CPU build here), then fairseq-fixed is built
# from source against it (--no-build-isolation), as fairseq-fixed requires.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3}
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip setuptools wheel
"${PIP[@]}" install --quiet -c constraints.txt torch numpy cython
"${PIP[@]}" install --quiet -c constraints.txt --no-build-isolation -e ".[all,test]"
"$VENV/bin/python" -c "import hat, torch, fairseq, onnxruntime, ray; print('hat', hat.__version__, '| torch', torch.__version__, '| fairseq', fairseq.__version__, '| onnxruntime', onnxruntime.__version__, '| ray', ray.__version__)"
