"""GPU smoke test and timing (run by benchmarks/gpu_check.sh on a machine with CUDA).

Trains every method for one epoch on CUDA, checks that CUDA predictions of a trained
estimator match the same model's on the CPU, and times one image-training epoch (3000
images, small CNN, joint_nce, M = 256) on the GPU and on the CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from ebreg.config import METHODS, ModelConfig, TrainConfig
    from ebreg.datasets import Toy1, cell_counts
    from ebreg.engine import fit
    from ebreg.estimators import EBMRegressor

    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.cuda.get_device_name(0), flush=True)
    data = Toy1.sample(1000, 0)
    x = torch.as_tensor(data.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(data.y, dtype=torch.float32).view(-1, 1)
    for method in METHODS:
        result = fit(ModelConfig(), TrainConfig(method=method, epochs=1), x, y, progress=False, accelerator="gpu",
                     devices=1)
        assert all(torch.isfinite(p).all() for p in result.module.parameters()), method
        print(f"{method}: one CUDA epoch {result.train_seconds:.2f} s", flush=True)
    X, Y = data.x[:, None], data.y
    est = EBMRegressor(epochs=5, device="cuda", random_state=0).fit(X, Y)
    gpu_mean = est.predict(X[:200])
    est.models_ = [m.cpu() for m in est.models_]
    est.set_params(device="cpu")
    cpu_mean = est.predict(X[:200])
    print(f"estimator: max |CUDA - CPU| of the SNIS mean {np.abs(gpu_mean - cpu_mean).max():.2e}", flush=True)
    imgs = cell_counts(3000, 0)
    xi, yi = torch.as_tensor(imgs.x), torch.as_tensor(imgs.y, dtype=torch.float32)
    cfg = ModelConfig(backbone="cnn", feature_hidden=(64,), target_hidden=(32, 32), joint_width=32,
                      proposal_hidden=(64,))
    for name, kwargs in (("GPU", {"accelerator": "gpu", "devices": 1}), ("CPU", {"accelerator": "cpu"})):
        start = time.perf_counter()
        r = fit(cfg, TrainConfig(epochs=2, num_samples=256), xi, yi, progress=False, **kwargs)
        print(f"image epoch on {name}: {r.train_seconds / 2:.2f} s (3000 images)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
