"""Grid-based evaluation protocols for 1-D targets (docs/protocols.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..ebm import ConditionalEBM
from ..mdn import MixtureDensityNetwork
from ..metrics import grid_log_likelihood, kl_to_truth_grid

__all__ = ["Scorer", "scorer", "grid_scores", "grid_nll", "toy1_kl_to_truth", "TOY2_GRID"]

#: ``(x (n, ...), y (G, n, D)) -> (G, n)``: log-density up to a constant per x.
Scorer = Callable[[Tensor, Tensor], Tensor]

#: The toy-2 NLL protocol's grid: 8192 points on [-12.5, 12.5].
TOY2_GRID = (-12.5, 12.5, 8192)


def scorer(model: nn.Module, proposal: bool = False) -> Scorer:
    """Log-density (up to a constant) of an EBM, of its learned proposal, or of an MDN."""
    if isinstance(model, MixtureDensityNetwork):
        return lambda x, ys: model(x).log_prob(ys)
    if not isinstance(model, ConditionalEBM):
        raise TypeError(f"expected ConditionalEBM or MixtureDensityNetwork, got {type(model).__name__}")
    if proposal:
        return lambda x, ys: model.proposal_distribution(model.features(x)).log_prob(ys)
    return lambda x, ys: model.log_unnormalized(x, ys)


@torch.no_grad()
def grid_scores(score: Scorer, x: Tensor, grid: Tensor, max_candidates: int = 2**21) -> Tensor:
    """Scores ``(G, n)`` of every grid value ``(G,)`` for every row of ``x`` (D = 1), chunked."""
    size = max(1, max_candidates // grid.numel())
    out = []
    for start in range(0, x.shape[0], size):
        xc = x[start:start + size]
        ys = grid.view(-1, 1, 1).expand(-1, xc.shape[0], 1)
        out.append(score(xc, ys))
    return torch.cat(out, 1)


@torch.no_grad()
def grid_nll(score: Scorer, x: Tensor, y: Tensor, grid: Tensor) -> float:
    """Mean test NLL with each p(y|x) normalised by the trapezoid rule on ``grid`` (D = 1).

    ``x``: ``(n, 1)``; ``y``: ``(n,)`` or ``(n, 1)``.
    """
    y = y.reshape(-1, 1)
    f_data = score(x, y.unsqueeze(0)).squeeze(0)
    log_p = grid_log_likelihood(f_data, grid_scores(score, x, grid), grid)
    return float(-log_p.mean())


@torch.no_grad()
def toy1_kl_to_truth(score: Scorer, true_log_prob: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     points: int = 2048, low: float = -3.0, high: float = 3.0) -> float:
    """Toy-1 protocol: mean over ``points`` x on [low, high] of KL(truth || model) on a y grid."""
    xs = torch.linspace(low, high, points)
    ys = torch.linspace(low, high, points)
    scores = grid_scores(score, xs.view(-1, 1), ys)  # (G_y, G_x)
    truth = np.exp(true_log_prob(xs.numpy()[None, :].astype(float), ys.numpy()[:, None].astype(float)))
    return float(kl_to_truth_grid(scores, torch.as_tensor(truth)).mean())
