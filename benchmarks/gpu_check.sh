#!/usr/bin/env bash
# GPU check (issue 10): the default chain at 224 px in bf16 on a CUDA GPU, then training and
# inference images/s for Trainer and a plain AMP loop, and top-1. Run from the project root:
#     bash benchmarks/gpu_check.sh
# Without a GPU it says so and exits 2 (nothing is measured, nothing is written).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to torch; nothing measured (runtime.device=cuda" \
         "needs a CUDA build of torch and a GPU)." >&2
    exit 2
fi

kedro run --params="runtime.device=cuda,runtime.precision=bf16,backbone.input_size=224"
python benchmarks/gpu_check.py --data data --size 224
