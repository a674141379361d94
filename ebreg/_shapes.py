"""The shape convention used everywhere in ebreg, written once.

Following ``torch.distributions`` (sample + batch + event):

* inputs ``x``: ``(n, *input_shape)``; features ``h = g(x)``: ``(n, H)``;
* targets ``y``: ``(n, D)``, also when D = 1;
* candidate targets (proposal samples): ``(M, n, D)``;
* scores ``f(x, y)`` and log-densities of candidates: ``(M, n)``;
* per-example losses and statistics: ``(n,)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_targets", "as_candidates", "check_finite"]


def as_targets(y: Tensor) -> Tensor:
    """Return targets as ``(n, D)``: a vector ``(n,)`` becomes ``(n, 1)``."""
    if y.dim() == 1:
        return y.unsqueeze(-1)
    if y.dim() != 2:
        raise ValueError(f"targets must have shape (n,) or (n, D), got {tuple(y.shape)}")
    return y


def as_candidates(y: Tensor) -> Tensor:
    """Return candidate targets as ``(M, n, D)``; targets ``(n, D)`` become ``(1, n, D)``."""
    if y.dim() == 2:
        return y.unsqueeze(0)
    if y.dim() != 3:
        raise ValueError(f"candidates must have shape (n, D) or (M, n, D), got {tuple(y.shape)}")
    return y


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``t`` holds NaN or infinity."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
