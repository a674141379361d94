"""Metrics: CRPS against its closed form and by hand, coverage, PIT, grid protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scoringrules
import torch

from ebreg.inference import WeightedSamples
from ebreg.metrics import (
    calibration_error,
    crps_ensemble,
    crps_weighted,
    grid_log_likelihood,
    grid_log_normalizer,
    interval_coverage,
    kl_to_truth_grid,
    nll,
    pit_values,
)


def test_crps_by_hand() -> None:
    # samples {0, 1}, y = 0.5: E|X - y| - E|X - X'| / 2 = 0.5 - 0.25
    assert crps_ensemble(torch.tensor([0.5]), torch.tensor([[0.0], [1.0]])).item() == pytest.approx(0.25)
    # weighted: P(0) = 0.75, P(1) = 0.25, y = 1: 0.75 - (2 * 0.75 * 0.25) / 2
    w = torch.tensor([[0.75], [0.25]])
    assert crps_ensemble(torch.tensor([1.0]), torch.tensor([[0.0], [1.0]]), w).item() == pytest.approx(0.5625)


def test_sample_crps_converges_to_the_gaussian_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0.0, 1.0, -2.5], dtype=torch.float64)
    samples = 1.3 * torch.randn(50_000, 3, generator=g, dtype=torch.float64) + 0.2
    exact = scoringrules.crps_normal(y.numpy(), 0.2, 1.3, backend="numpy")
    assert np.allclose(crps_ensemble(y, samples).numpy(), exact, rtol=0.01)


def test_weighted_crps_equals_the_repeated_ensemble() -> None:
    ys = torch.tensor([0.0, 1.0, 3.0]).view(3, 1, 1)
    ws = WeightedSamples(ys, torch.log(torch.tensor([[0.5], [0.25], [0.25]])))
    repeated = torch.tensor([[0.0], [0.0], [1.0], [3.0]])
    y = torch.tensor([0.7])
    assert crps_weighted(ws, y).item() == pytest.approx(crps_ensemble(y, repeated).item(), rel=1e-6)


def test_coverage_pit_and_calibration() -> None:
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert interval_coverage(y, torch.zeros(4), torch.full((4,), 1.5)) == 0.5
    assert nll(torch.tensor([-1.0, -3.0])) == 2.0
    uniform = (torch.arange(10_000) + 0.5) / 10_000
    assert calibration_error(uniform) < 1e-3
    # PIT all 0.5: every central interval covers, so the gap is mean(1 - a) = 0.5
    assert calibration_error(torch.full((100,), 0.5)) == pytest.approx(0.5)
    ws = WeightedSamples(torch.arange(4.0).view(4, 1, 1), torch.zeros(4, 1))
    assert pit_values(ws, torch.tensor([1.0])).item() == 0.5


def test_grid_normaliser_of_a_gaussian() -> None:
    grid = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    scores = (-0.5 * (grid / 0.8) ** 2 + 2.0).view(-1, 1)  # exp(2) * sqrt(2 pi) * 0.8
    expected = 2.0 + math.log(math.sqrt(2 * math.pi) * 0.8)
    assert grid_log_normalizer(scores, grid).item() == pytest.approx(expected, abs=1e-9)
    ll = grid_log_likelihood(torch.tensor([2.0], dtype=torch.float64), scores, grid)
    assert ll.item() == pytest.approx(-math.log(math.sqrt(2 * math.pi) * 0.8), abs=1e-9)


def test_kl_to_truth_grid() -> None:
    grid = torch.linspace(-3, 3, 101, dtype=torch.float64)
    truth = torch.exp(-0.5 * grid**2).view(-1, 1)
    assert kl_to_truth_grid(truth.log() + 5.0, truth).item() == pytest.approx(0.0, abs=1e-12)
    # a model putting all scores at -inf becomes uniform: KL = log(G) - H(truth)
    dead = torch.full((101, 1), -math.inf, dtype=torch.float64)
    p = (truth + 1e-30) / (truth + 1e-30).sum()
    assert kl_to_truth_grid(dead, truth).item() == pytest.approx(float((p * (p * 101).log()).sum()))
    # NaN scores stay NaN: a diverged model is never hidden
    assert math.isnan(kl_to_truth_grid(torch.full((101, 1), math.nan), truth).item())
