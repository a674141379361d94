"""GPU smoke test and timing (run by benchmarks/gpu_check.sh on a machine with CUDA).

    python -m benchmarks.gpu_smoke [methods|syncs|toy|estimator|prediction|image ...]

* every method trains one epoch on CUDA with finite weights (and finite losses on the CPU
  afterwards); joint_nce also in bfloat16
  mixed precision and under DDP (one process);
* host-device synchronisations in training: counted with torch's sync debug mode over
  one toy epoch, with the deferred non-finite-loss check (the default on accelerators) and
  with the immediate one (the CPU's), each sync site listed with its count;
* seconds per toy-1 epoch (reference configuration) on CUDA, both checks, alternated;
* a trained estimator on CUDA against the same model on the CPU: its scores on a grid, and
  its SNIS means (which differ by Monte Carlo noise: each device draws its own samples);
* prediction on CUDA: SNIS mean and 90 % interval for 10^4 rows, the mean for 10^6 rows at
  several chunk sizes, with the peak GPU memory (M = 1024);
* one image-training epoch (3000 images, small CNN, joint_nce, M = 256) on the GPU and the CPU.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

from benchmarks.speed import epoch_seconds, toy_data

GPU = {"accelerator": "gpu", "devices": 1}


@contextmanager
def immediate_check(on: bool) -> Iterator[None]:
    """The CPU's immediate non-finite-loss check (one read of the loss per step) when ``on``."""
    with patch("ebreg.engine.defers_finite_check", lambda device: not on):
        yield


def every_method() -> None:
    from ebreg.config import METHODS, ModelConfig, TrainConfig
    from ebreg.engine import fit

    x, y = toy_data(1000)
    for method in METHODS:
        result = fit(ModelConfig(), TrainConfig(method=method, epochs=1), x, y, progress=False, **GPU)
        assert all(torch.isfinite(p).all() for p in result.module.parameters()), method
        terms = result.module.losses(x[:8], y[:8])  # after the fit the module is on the CPU
        assert all(torch.isfinite(v).all() for v in terms.values()), method
        print(f"{method}: one CUDA epoch {result.train_seconds:.2f} s", flush=True)
    for name, kwargs in (("bf16-mixed", {"precision": "bf16-mixed"}), ("DDP on one GPU", {"strategy": "ddp"})):
        result = fit(ModelConfig(), TrainConfig(epochs=1), x, y, progress=False, **GPU, **kwargs)
        assert all(torch.isfinite(p).all() for p in result.module.parameters()), name
        print(f"joint_nce, {name}: one CUDA epoch {result.train_seconds:.2f} s", flush=True)


def sync_sites(immediate: bool) -> None:
    """Count the synchronising calls of one toy epoch (2000 rows, 63 steps) by call site."""
    from ebreg.config import ModelConfig, TrainConfig
    from ebreg.engine import fit

    x, y = toy_data()
    sites: Counter[str] = Counter()

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        frames = [f for f in traceback.extract_stack()[:-1] if "warnings" not in f.filename]
        ours = [f for f in frames if "/ebreg/" in f.filename or "lightning" in f.filename]
        shown = [frames[-1], *(f for f in ours[-3:] if f is not frames[-1])]  # innermost, then ours
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in shown)
        sites[f"{str(message)[:60]} @ {where}"] += 1

    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(), immediate_check(immediate):
        warnings.simplefilter("always")
        warnings.showwarning = record
        fit(ModelConfig(), TrainConfig(epochs=1), x, y, progress=False, **GPU)
    torch.cuda.set_sync_debug_mode("default")
    label = "immediate" if immediate else "deferred"
    print(f"syncs in one toy epoch (63 steps), {label} check: {sum(sites.values())}", flush=True)
    for site, count in sites.most_common(12):
        print(f"  {count:5d}  {site}", flush=True)


def toy_epoch_timing(rounds: int = 3, epochs: int = 5) -> None:
    from ebreg.config import ModelConfig

    x, y = toy_data()
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for immediate in (False, True):
            with immediate_check(immediate):
                times[immediate].append(epoch_seconds(ModelConfig(), x, y, epochs, **GPU))
    for immediate, runs in times.items():
        label = "immediate" if immediate else "deferred"
        print(f"toy 1 epoch on CUDA, {label} check: median {statistics.median(runs):.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in runs)})", flush=True)


def estimator_matches_cpu() -> None:
    from ebreg.datasets import Toy1
    from ebreg.estimators import EBMRegressor

    data = Toy1.sample(1000, 0)
    X, Y = data.x[:, None], data.y
    est = EBMRegressor(epochs=5, device="cuda", random_state=0).fit(X, Y)
    gpu_mean = est.predict(X[:200])
    x = torch.as_tensor(X[:200], dtype=torch.float32)
    y = torch.linspace(-3, 3, 64).view(64, 1, 1).expand(64, 200, 1)
    with torch.no_grad():
        gpu_scores = est.models_[0].log_unnormalized(x.cuda(), y.cuda()).cpu()
        est.models_ = [m.cpu() for m in est.models_]
        cpu_scores = est.models_[0].log_unnormalized(x, y)
    est.set_params(device="cpu")
    cpu_mean = est.predict(X[:200])
    print(f"estimator: max |CUDA - CPU| of the scores f(x, y) on a grid {(gpu_scores - cpu_scores).abs().max():.2e} "
          f"(of max |f| {cpu_scores.abs().max():.2f}); of the SNIS mean {np.abs(gpu_mean - cpu_mean).max():.2e} "
          "(the two devices draw different proposal samples)", flush=True)


def prediction() -> None:
    """SNIS on CUDA for the reference toy widths (10) and the estimators' default widths
    (64/32), at the default chunk size and others (candidates evaluated at once)."""
    from ebreg.config import ModelConfig
    from ebreg.ebm import ConditionalEBM
    from ebreg.predictive import SNISPredictive

    configs = {"toy widths": ModelConfig(),
               "estimator widths": ModelConfig(feature_hidden=(64, 64), target_hidden=(32, 32), joint_width=32,
                                               proposal_hidden=(64,))}
    runs = [(10_000, None), (10_000, None), (1_000_000, 2**18), (1_000_000, 2**20), (1_000_000, None),
            (1_000_000, 2**22)]  # the first 10^4 warms up
    for name, cfg in configs.items():
        model = ConditionalEBM.from_config(cfg).eval().cuda()
        for rows, chunk in runs:
            x = torch.rand(rows, 1, device="cuda") * 6 - 3
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            start = time.perf_counter()
            dist = SNISPredictive(model, x, 1024, seed=0, max_candidates=chunk)
            _ = dist.mean()  # draws and weighs the samples
            if rows == 10_000:
                dist.interval(0.9)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            what = "mean and 90 % interval" if rows == 10_000 else "mean"
            print(f"prediction on CUDA, {name}, {rows} rows, M = 1024, {what}, chunks of "
                  f"{chunk or 'default'} candidates: {seconds:.3f} s, "
                  f"peak GPU memory {torch.cuda.max_memory_allocated() / 1024**3:.2f} GB", flush=True)


def image_epoch() -> None:
    from ebreg.config import ModelConfig, TrainConfig
    from ebreg.datasets import cell_counts
    from ebreg.engine import fit

    imgs = cell_counts(3000, 0)
    xi, yi = torch.as_tensor(imgs.x), torch.as_tensor(imgs.y, dtype=torch.float32)
    cfg = ModelConfig(backbone="cnn", feature_hidden=(64,), target_hidden=(32, 32), joint_width=32,
                      proposal_hidden=(64,))
    for name, kwargs in (("GPU", GPU), ("CPU", {"accelerator": "cpu"})):
        r = fit(cfg, TrainConfig(epochs=2, num_samples=256), xi, yi, progress=False, **kwargs)
        print(f"image epoch on {name}: {r.train_seconds / 2:.2f} s (3000 images)", flush=True)


CHECKS = {"methods": every_method, "syncs": lambda: (sync_sites(immediate=False), sync_sites(immediate=True)),
          "toy": toy_epoch_timing, "estimator": estimator_matches_cpu, "prediction": prediction,
          "image": image_epoch}


def main(names: list[str]) -> int:
    """Run the checks named (all by default), each even when an earlier one failed."""
    assert torch.cuda.is_available(), "no CUDA device"
    print(torch.cuda.get_device_name(0), flush=True)
    failed = 0
    for name in names or CHECKS:
        try:
            CHECKS[name]()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
