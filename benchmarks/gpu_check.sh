#!/usr/bin/env bash
# GPU check (about 5 minutes): the test suite, then CUDA training of every method, CUDA vs
# CPU predictions, and one image-training epoch timed on the GPU and the CPU.
#   bash benchmarks/gpu_check.sh            (from the repository root, on a machine with CUDA)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
timeout 180 python -m pytest -q -x -m "not slow" || echo "test suite: see above"
timeout 120 python benchmarks/gpu_smoke.py
