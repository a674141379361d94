"""Targets with a bounded support: the model learns ``z = T(y)`` on the whole real line and
predicts in original units through ``T^{-1}``, densities with the Jacobian ``|dT/dy|``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["TargetTransform", "target_transform"]


@dataclass(frozen=True)
class TargetTransform:
    """``"log"``: ``z = log y`` for ``y > 0``; ``"logit"``: ``z = log(u / (1 - u))`` with
    ``u = (y - low) / (high - low)`` for ``low < y < high``."""

    kind: str
    low: float = 0.0
    high: float = 1.0

    def inside(self, y: np.ndarray) -> np.ndarray:
        """Which values lie strictly inside the support."""
        return (y > self.low) & ((y < self.high) if self.kind == "logit" else True)

    def support(self) -> str:
        return "y > 0" if self.kind == "log" else f"{self.low:g} < y < {self.high:g}"

    def forward(self, y: Tensor) -> Tensor:
        """``T(y)``; -inf / +inf below / above the support."""
        if self.kind == "log":
            return torch.where(y > 0, y, 0).log()
        u = ((y - self.low) / (self.high - self.low)).clamp(0, 1)
        return u.log() - (1 - u).log()

    def inverse(self, z: Tensor) -> Tensor:
        if self.kind == "log":
            return z.exp()
        return self.low + (self.high - self.low) * torch.sigmoid(z)

    def log_abs_det_jacobian(self, y: Tensor) -> Tensor:
        """``log |dT/dy|`` at ``y`` inside the support (-inf density outside comes from ``forward``)."""
        if self.kind == "log":
            return -torch.where(y > 0, y, 1).log()
        u = ((y - self.low) / (self.high - self.low)).clamp(1e-300, 1 - 1e-16)
        return -(u.log() + (1 - u).log()) - math.log(self.high - self.low)


def target_transform(kind: str | None, bounds: tuple[float, float] | None) -> TargetTransform | None:
    """The transform an estimator's ``target_transform`` and ``target_bounds`` name (validated)."""
    if kind is None:
        if bounds is not None:
            raise ValueError("target_bounds needs target_transform='logit'")
        return None
    if kind == "log":
        if bounds is not None:
            raise ValueError("target_transform='log' takes no target_bounds (its support is y > 0)")
        return TargetTransform("log")
    if kind == "logit":
        if bounds is None:
            return TargetTransform("logit", 0.0, 1.0)
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"target_bounds must be two numbers (low, high), got {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"target_bounds must be finite with low < high, got {bounds!r}")
        return TargetTransform("logit", low, high)
    raise ValueError(f"target_transform must be None, 'log' or 'logit', got {kind!r}")
