"""Affine standardisation carried inside the models, so that they act in original units."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .proposals import GaussianMixture

__all__ = ["AffineScaling"]


class AffineScaling(nn.Module):
    """``z = (v - loc) / scale`` per column; the identity until :meth:`fit_` is called.

    ``loc`` and ``scale`` are buffers, so they travel with the model's ``state_dict``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit_(self, data: Tensor, weight: Tensor | None = None) -> AffineScaling:
        """Set loc and scale to the column means and population standard deviations of
        ``data`` ``(n, dim)``, rows weighed by ``weight`` ``(n,)`` where given; a constant
        column keeps scale 1."""
        if data.shape[0] == 0:
            raise ValueError("cannot standardise with no rows")
        if weight is None:
            mean, std = data.mean(0), data.std(0, unbiased=False)
        else:
            w = (weight / weight.sum()).unsqueeze(-1)
            mean = (w * data).sum(0)
            std = (w * (data - mean) ** 2).sum(0).sqrt()
        self.loc.copy_(mean)
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def forward(self, v: Tensor) -> Tensor:
        """``v``: ``(..., dim)`` in original units -> standardised."""
        return (v - self.loc) / self.scale

    def log_abs_det(self) -> Tensor:
        """``log |d z / d v|`` = ``-sum log scale`` (a scalar)."""
        return -self.scale.log().sum()

    def inverse_mixture(self, logits: Tensor, loc: Tensor, scale: Tensor) -> GaussianMixture:
        """The mixture of ``v = loc + scale * z`` for ``z`` from the mixture with these
        parameters (logits ``(n, K)``, means and standard deviations ``(n, K, D)``): exact,
        again a mixture, built once."""
        return GaussianMixture(logits, self.loc + self.scale * loc, self.scale * scale)
