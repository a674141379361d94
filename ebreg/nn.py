"""Small network builders: MLPs and the pieces the energy head is made of."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["mlp", "ResidualBlock", "small_cnn", "feature_network", "full_precision", "linear_over_rows"]


def full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 if it is in a lower precision (bf16/fp16 autocast), else unchanged."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def linear_over_rows(weight: Tensor, bias: Tensor | None, v: Tensor) -> Tensor:
    """``F.linear(v, weight, bias)`` for ``v`` ``(..., in)``: the same values, but the product takes
    the weight transposed and contiguous, so that backward forms the weight's gradient as
    ``v^T g`` rather than autograd's ``g^T v``. For a few inputs over tens of thousands of rows,
    as the first layer of a wide energy head sees its candidates, the CPU's BLAS runs the former
    several times faster."""
    rows = v.reshape(-1, v.shape[-1])
    w_t = weight.t().contiguous()
    out = torch.mm(rows, w_t) if bias is None else torch.addmm(bias, rows, w_t)
    return out.view(*v.shape[:-1], weight.shape[0])


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


def small_cnn(in_channels: int = 1, widths: Sequence[int] = (16, 32, 32, 64)) -> nn.Sequential:
    """Images ``(n, C, H, W)`` -> ``(n, widths[-1])``: 3x3 stride-2 convolutions with ReLU,
    then global average pooling. Small enough to train on 2 CPU cores (64 x 64 inputs:
    about 4.4 MFLOP per image)."""
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU()]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _resnet18(in_channels: int) -> tuple[nn.Module, int]:
    try:
        from torchvision.models import resnet18
    except ImportError as err:
        raise ImportError("backbone='resnet18' needs torchvision: pip install torchvision") from err
    net = resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    width = net.fc.in_features
    net.fc = nn.Identity()
    return net, width


def feature_network(config) -> nn.Module:  # noqa: ANN001 - a ModelConfig (no import cycle)
    """The feature network g of ``config``: backbone (for images) then the feature MLP."""
    if config.backbone == "mlp":
        return mlp(config.input_dim, config.feature_hidden)
    if config.backbone == "cnn":
        body, width = small_cnn(config.input_channels), 64
    else:
        body, width = _resnet18(config.input_channels)
    return nn.Sequential(body, mlp(width, config.feature_hidden))


class ResidualBlock(nn.Module):
    """``z -> relu(W z + b) + z`` (width preserved)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, z: Tensor) -> Tensor:
        """``z``: ``(..., width)`` -> ``(..., width)``."""
        return torch.relu(self.linear(z)) + z
