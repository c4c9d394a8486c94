#!/bin/bash
# Deployed-latency check for a GPU machine (about 10 minutes on one GPU): the tiny space profiled
# with PyTorch CUDA (CUDA events) and with onnxruntime's CUDA execution provider, a predictor for
# each, and `hat verify` of an exported model on the onnxruntime CUDA predictor's runtime.
#
#     bash experiments/gpu_check_latency.sh [OUT]      # default OUT: runs/gpu_check_latency
#
# Needs torch with CUDA, onnxruntime-gpu and this package (fairseq for the short training).
set -euo pipefail
OUT=${1:-runs/gpu_check_latency}
mkdir -p "$OUT"
export HAT_CACHE_DIR="$OUT/pieces"
python -c "import torch, onnxruntime as o; print(torch.cuda.get_device_name(0), o.__version__, o.get_available_providers())"
hat data synthetic --out "$OUT/syn" --prepare
hat train --space tiny --data "$OUT/syn/bin" --save-dir "$OUT/ckpt" --max-update 200 --max-tokens 4096
common=(--space tiny --data "$OUT/syn/bin" --samples 40 --test-samples 20 --runs 10)
for kind in cuda ort_cuda; do
  if [ $kind = cuda ]; then extra=(--backend cuda); else extra=(--backend onnxruntime --provider CUDAExecutionProvider); fi
  /usr/bin/time -f "$kind profile: %e s" hat profile "${common[@]}" "${extra[@]}" --out "$OUT/$kind"
  hat predictor fit --data "$OUT/$kind/dataset.csv" --tables "$OUT/$kind" --out "$OUT/$kind/predictor.json"
  hat predictor eval --predictor "$OUT/$kind/predictor.json" --data "$OUT/$kind/test.csv" --json > "$OUT/$kind/test_metrics.json"
  cat "$OUT/$kind/test_metrics.json"
done
hat export --checkpoint "$OUT/ckpt/checkpoint_best.pt" --data "$OUT/syn/bin" --out "$OUT/model" --onnx
hat verify --model "$OUT/model" --predictor "$OUT/ort_cuda/predictor.json" --json | tee "$OUT/verify.json"
