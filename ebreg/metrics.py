"""Scores for probabilistic predictions: NLL, CRPS, interval coverage, PIT, grid protocols."""

from __future__ import annotations

import math

import numpy as np
import scoringrules
import torch
from torch import Tensor

from .inference import WeightedSamples

__all__ = [
    "nll",
    "crps_ensemble",
    "crps_weighted",
    "interval_coverage",
    "pit_values",
    "calibration_error", "pit_coverage",
    "grid_log_normalizer",
    "grid_log_likelihood",
    "kl_to_truth_grid",
]


def nll(log_prob: Tensor) -> float:
    """Mean negative log-likelihood from per-row log-densities ``(n,)``."""
    return float(-log_prob.mean())


def crps_ensemble(y: Tensor, samples: Tensor, weights: Tensor | None = None) -> Tensor:
    """CRPS of an (optionally weighted) ensemble, per row (D = 1).

    ``y``: ``(n,)`` or ``(n, 1)``; ``samples``: ``(M, n)`` or ``(M, n, 1)``; ``weights``:
    ``(M, n)`` summing to one over M, or None for equal weights. Computed exactly for the
    (weighted) empirical distribution by ``scoringrules``. Returns ``(n,)``.
    """
    obs = y.reshape(-1).detach().cpu().double().numpy()
    fct = samples.reshape(samples.shape[0], -1).T.detach().cpu().double().numpy()
    kwargs = {}
    if weights is not None:
        kwargs["ens_w"] = weights.T.detach().cpu().double().numpy()
    out = scoringrules.crps_ensemble(obs, fct, m_axis=-1, backend="numpy", **kwargs)
    return torch.as_tensor(np.asarray(out), dtype=samples.dtype)


def crps_weighted(ws: WeightedSamples, y: Tensor) -> Tensor:
    """CRPS of the SNIS predictive distribution ``ws`` at ``y`` ``(n,)`` -> ``(n,)`` (D = 1)."""
    return crps_ensemble(y, ws.samples, ws.weights())


def interval_coverage(y: Tensor, low: Tensor, high: Tensor) -> float:
    """Fraction of rows with ``low <= y <= high`` (all ``(n,)``)."""
    y = y.reshape(-1)
    return float(((y >= low) & (y <= high)).double().mean())


def pit_values(ws: WeightedSamples, y: Tensor) -> Tensor:
    """Probability integral transform ``F(y|x)`` per row ``(n,)`` (D = 1).

    For a calibrated model these are uniform on [0, 1].
    """
    return ws.cdf(y)


def calibration_error(pit: Tensor, levels: int = 20) -> float:
    """Mean absolute gap between central-interval coverage and nominal level.

    Computed from PIT values ``(n,)`` at levels ``1/levels, ..., (levels-1)/levels``: the
    central interval of level a covers y iff ``|PIT - 0.5| <= a / 2``.
    """
    a = torch.arange(1, levels, dtype=torch.float64) / levels
    return float((pit_coverage(pit, a) - a).abs().mean())


def pit_coverage(pit: Tensor, levels: Tensor) -> Tensor:
    """Observed coverage ``(L,)`` of the central intervals of nominal ``levels`` ``(L,)``:
    the interval of level a covers y iff ``|PIT - 0.5| <= a / 2``."""
    return ((pit.double().reshape(-1, 1) - 0.5).abs() <= levels.double() / 2).double().mean(0)


def _trapezoid_log_weights(grid: Tensor) -> Tensor:
    """``log`` of the trapezoid-rule weights of a sorted 1-D grid ``(G,)``."""
    dx = grid.diff()
    w = torch.zeros_like(grid)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w.log()


def grid_log_normalizer(scores: Tensor, grid: Tensor) -> Tensor:
    """``log ∫ exp f(x, y) dy`` by the trapezoid rule on ``grid`` ``(G,)``.

    ``scores``: ``(G, n)`` scores of every grid point for every row -> ``(n,)``.
    """
    return torch.logsumexp(scores + _trapezoid_log_weights(grid).to(scores).unsqueeze(1), 0)


def grid_log_likelihood(f_data: Tensor, scores: Tensor, grid: Tensor) -> Tensor:
    """``log p(y|x) = f(x, y) - log Z(x)`` with Z on a grid (D = 1).

    ``f_data``: ``(n,)`` scores at the observed y; ``scores``: ``(G, n)`` on ``grid`` ``(G,)``.
    """
    return f_data - grid_log_normalizer(scores, grid)


def kl_to_truth_grid(scores: Tensor, true_density: Tensor, eps: float = 1e-30) -> Tensor:
    """Per-x KL(p_true || p_model) on a y grid (the toy-1 protocol).

    ``scores``: ``(G, n)`` model log-densities (up to a constant) on the grid for n inputs;
    ``true_density``: ``(G, n)`` true density on the same grid. Each column is normalised
    into a discrete distribution (the truth after adding ``eps``); a column of the model
    whose scores are all -inf (exp underflows) becomes uniform; NaN stays NaN. Returns ``(n,)``; average it for the protocol.
    """
    scores = scores.double()
    dead = (scores == -math.inf).all(0)
    scores = torch.where(dead.unsqueeze(0), torch.zeros_like(scores), scores)
    log_p_model = torch.log_softmax(scores, 0)
    p_true = true_density.double() + eps
    p_true = p_true / p_true.sum(0, keepdim=True)
    return (p_true * (p_true.log() - log_p_model)).sum(0)
