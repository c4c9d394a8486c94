#!/usr/bin/env bash
# Create ./.venv with HAT and every extra (train, ray, onnx, plots, test).
# Usage: bash scripts/setup_venv.sh [VENV_DIR]
# torch is installed first from constraints.txt (a CPU build here), then fairseq-fixed is built
# from source against it (--no-build-isolation), as fairseq-fixed requires. fairseq's dependency on
# torchaudio is left out: HAT never uses it, and no torchaudio release loads beside this torch.
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
"${PIP[@]}" install --quiet -c constraints.txt --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
"${PIP[@]}" install --quiet -c constraints.txt --no-deps -e .
# Every other requirement of fairseq-fixed and of HAT's extras, read from the installed metadata.
mapfile -t REQUIREMENTS < <("$VENV/bin/python" - <<'PYTHON'
import re
from importlib.metadata import requires

wanted = []
for spec in requires("fairseq-fixed") + requires("hat-nas"):
    name = re.split(r"[ ;<>=!~\[]", spec, maxsplit=1)[0].lower()
    extra = re.search(r'extra == "([^"]+)"', spec)
    if name in ("torchaudio", "fairseq-fixed", "torch") or (extra and extra.group(1) not in ("all", "test")):
        continue
    wanted.append(spec.split(";")[0].strip())
print("\n".join(sorted(set(wanted))))
PYTHON
)
# --no-warn-conflicts: pip would report the torchaudio left out above as an error.
"${PIP[@]}" install --quiet --no-warn-conflicts -c constraints.txt "${REQUIREMENTS[@]}"
"$VENV/bin/python" -c "import hat, torch, fairseq, onnxruntime, ray; print('hat', hat.__version__, '| torch', torch.__version__, '| fairseq', fairseq.__version__, '| onnxruntime', onnxruntime.__version__, '| ray', ray.__version__)"
