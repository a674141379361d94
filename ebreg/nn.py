"""Small network builders: MLPs and the pieces the energy head is made of."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["mlp", "ResidualBlock"]


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int | None = None,
    activation: type[nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Linear layers with ``activation`` after each hidden layer.

    With ``out_features=None`` the last hidden layer (and its activation) is the output,
    as in a feature network; otherwise a final Linear without activation is added.
    """
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``z -> relu(W z + b) + z`` (width preserved)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, z: Tensor) -> Tensor:
        """``z``: ``(..., width)`` -> ``(..., width)``."""
        return torch.relu(self.linear(z)) + z
