#!/usr/bin/env bash
# GPU check (issue 10): the default chain at 224 px in bf16 on a CUDA GPU, then training and
# inference images/s for Trainer and a plain AMP loop, and top-1. Run from anywhere:
#     bash benchmarks/gpu_check.sh
# Without a GPU it says so and exits 2 (nothing is measured, nothing is written). Each step has
# a time limit (GPU_CHECK_CHAIN_S, default 900 s; GPU_CHECK_TIMING_S, default 300 s): a run
# that hangs ends with status 124 instead of holding the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing measured (runtime.device=cuda" \
         "needs a CUDA build of torch and a GPU)." >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

SECONDS=0
timeout "${GPU_CHECK_CHAIN_S:-900}" \
    kedro run --params="runtime.device=cuda,runtime.precision=bf16,backbone.input_size=224"
echo "gpu_check: default chain at 224 px in bf16: ${SECONDS} s" >&2
timeout "${GPU_CHECK_TIMING_S:-300}" python benchmarks/gpu_check.py --data data --size 224
