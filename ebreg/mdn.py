"""A stand-alone mixture density network: feature network plus :class:`MDNHead`."""

from __future__ import annotations

from torch import Tensor, nn

from .config import ModelConfig
from .nn import feature_network
from .proposals import GaussianMixture, MDNHead
from .scaling import AffineScaling

__all__ = ["MixtureDensityNetwork"]


class MixtureDensityNetwork(nn.Module):
    """``q(y | x) = sum_k pi_k(x) N(y; mu_k(x), diag sigma_k(x)^2)`` with an exact density.

    Like :class:`ebreg.ebm.ConditionalEBM`, it standardises x and y inside and returns the
    mixture in original units.
    """

    def __init__(self, feature_net: nn.Module, head: MDNHead, input_dim: int = 1) -> None:
        super().__init__()
        self.feature_net = feature_net
        self.head = head
        self.x_scaling = AffineScaling(input_dim)
        self.y_scaling = AffineScaling(head.target_dim)

    @classmethod
    def from_config(cls, config: ModelConfig) -> MixtureDensityNetwork:
        """The MLP network of ``config`` (feature net and proposal-head shapes)."""
        return cls(
            feature_network(config),
            MDNHead(config.feature_hidden[-1], config.target_dim, config.components,
                    config.proposal_hidden, config.min_scale, config.max_scale),
            config.input_dim,
        )

    def forward(self, x: Tensor) -> GaussianMixture:
        """``x``: ``(n, *input_shape)`` -> mixture with batch ``(n,)``, event ``(D,)``."""
        h = self.feature_net(self.x_scaling(x))
        return self.y_scaling.inverse_mixture(*self.head.mixture_parameters(h))
