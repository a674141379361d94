"""The main job: train on toy 1, score against the true density, draw the densities."""

from __future__ import annotations

import platform
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import ModelConfig, TrainConfig
from ..datasets import Toy1, ToyData, load_toy1_reference
from ..engine import fit
from ..inference import log_likelihood, predict_mean
from ..io import write_json
from .evaluation import grid_nll, grid_scores, scorer, toy1_kl_to_truth
from .plotting import density_panels

__all__ = ["run_demo"]

#: seeds of the demo's fresh data (fixed, independent of the training seed)
TRAIN_DATA_SEED, TEST_DATA_SEED = 0, 1


def _tensors(data: ToyData) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(data.x, dtype=torch.float32).view(-1, 1),
            torch.as_tensor(data.y, dtype=torch.float32).view(-1, 1))


def _density(score, x: torch.Tensor, y_grid: torch.Tensor) -> np.ndarray:
    """Grid-normalised density ``(G_y, G_x)`` of a scorer."""
    s = grid_scores(score, x, y_grid)
    dy = float(y_grid[1] - y_grid[0])
    return (torch.softmax(s.double(), 0) / dy).numpy()


def run_demo(
    out: str | Path,
    epochs: int = 75,
    seed: int = 0,
    method: str = "joint_nce",
    components: int = 4,
    data: str | Path | None = None,
    reference: bool = False,
    progress: bool = True,
    **train_overrides: Any,
) -> dict[str, Any]:
    """Train ``method`` on toy 1 (reference architecture and settings) and write
    ``out/metrics.json`` and ``out/density.png``. Returns the metrics.

    ``data``: an ``.npz`` with arrays x, y to train on (e.g. the reference's exact points);
    default: 2000 fresh points from :class:`ebreg.datasets.Toy1`. ``reference``: the
    official code's optimiser settings (:meth:`TrainConfig.reference`) instead of ours.
    """
    out = Path(out)
    train = load_toy1_reference(data) if data is not None else Toy1.sample(2000, TRAIN_DATA_SEED)
    test = Toy1.sample(2000, TEST_DATA_SEED)
    model_cfg = ModelConfig(components=components)
    # raw (unstandardised) data as the reference trains on toy 1; the optimiser schedule is ours
    # unless ``reference`` asks for the official one
    make = TrainConfig.reference if reference else partial(TrainConfig, standardize=False)
    train_cfg = make(method=method, epochs=epochs, seed=seed, **train_overrides)
    x, y = _tensors(train)
    result = fit(model_cfg, train_cfg, x, y, progress=progress)
    module = result.module
    is_ebm = module.method.proposal != "separate"  # the EBM is the model shown (the MDN for MDN methods)
    model = module.ebm if is_ebm else module.mdn
    learned_proposal = module.ebm.proposal is not None if is_ebm else True

    metrics: dict[str, Any] = {"method": method, "seed": seed, "epochs": epochs}
    metrics["kl_to_truth"] = toy1_kl_to_truth(scorer(model), Toy1.true_log_prob)
    if is_ebm and learned_proposal:
        metrics["kl_to_truth_proposal"] = toy1_kl_to_truth(scorer(model, proposal=True), Toy1.true_log_prob)
    x_test, y_test = _tensors(test)
    y_grid = torch.linspace(-3.0, 3.0, 2048)
    metrics["test_nll_grid"] = grid_nll(scorer(model), x_test, y_test, y_grid)
    metrics["test_nll_true"] = float(-Toy1.true_log_prob(test.x, test.y).mean())
    gen = torch.Generator().manual_seed(seed)
    if is_ebm and learned_proposal:
        ll = log_likelihood(model, x_test, y_test, num_samples=1024, generator=gen)
        metrics["test_nll_snis_m1024"] = float(-ll.mean())
    metrics["train_seconds"] = result.train_seconds
    metrics["model_config"] = model_cfg.to_dict()
    metrics["train_config"] = train_cfg.to_dict()
    metrics["data"] = str(data) if data is not None else f"Toy1.sample(2000, seed={TRAIN_DATA_SEED})"
    metrics["versions"] = {"ebreg": __version__, "torch": torch.__version__,
                           "python": platform.python_version()}

    xs = torch.linspace(-3.0, 3.0, 300).view(-1, 1)
    ys = torch.linspace(-3.0, 3.0, 400)
    truth = np.exp(Toy1.true_log_prob(xs.numpy().reshape(1, -1), ys.numpy().reshape(-1, 1)))
    panels = [("true density", truth)]
    if is_ebm:
        panels.append((f"EBM ({method})", _density(scorer(model), xs, ys)))
    if learned_proposal:
        label = "proposal q(y|x)" if is_ebm else f"MDN ({method})"
        panels.append((label, _density(scorer(model, proposal=is_ebm), xs, ys)))
    curve = None
    if is_ebm and learned_proposal:
        mean = predict_mean(model, xs, num_samples=1024, generator=gen).squeeze(-1).numpy()
        curve = ("SNIS mean (M=1024)", mean)
    density_panels(out / "density.png", panels, xs.view(-1).numpy(), ys.numpy(), curve)
    write_json(out / "metrics.json", metrics)
    return metrics
