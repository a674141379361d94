#!/usr/bin/env bash
# GPU check (about 4 minutes on one GPU and 16 cores): CUDA training of every method, the
# host-device syncs of a training step, toy and image epochs timed, CUDA vs CPU predictions,
# prediction on 10^4 and 10^6 rows; then the test suite (in parallel where pytest-xdist is there).
#   bash benchmarks/gpu_check.sh            (from the repository root, on a machine with CUDA)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the CLI tests' subprocesses import ebreg from here
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'lightning', lightning.__version__)"
timeout 200 python3 -m benchmarks.gpu_smoke || echo "GPU smoke: failures above"
parallel=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8" || true)
OMP_NUM_THREADS=2 timeout 200 python3 -m pytest -q -p no:cacheprovider $parallel || echo "test suite: see above"
