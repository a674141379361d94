"""Parameters as views into one flat tensor, so that an optimiser steps one tensor, not dozens.

torch's Adam pays a fixed cost per parameter tensor (a Python loop over the parameters and,
in its fused CPU kernel, a host read of each step counter), which adds up for a small model
of many small tensors (the toy model has 28). With the parameters flattened the optimiser
sees one tensor; the modules keep their own parameters (same objects, names and shapes),
which are views into it, and so are their gradients, which backward accumulates in place.
The plain alternative, Adam over each parameter tensor, is what the flag ``flat_adam`` off gives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from . import current

__all__ = ["optimizer_parameters", "flatten", "unflatten", "zero_flat_grad"]


def optimizer_parameters(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    """What the optimiser steps: one flat tensor (:func:`flatten`) with the flag ``flat_adam``
    on, else the parameters themselves."""
    return flatten(list(params)) if current().flat_adam else list(params)


def flatten(params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """Make ``params`` views into one new flat parameter, and their gradients views into its
    (zeroed) gradient; return ``[flat]`` for the optimiser.

    Returns ``params`` unchanged when they cannot share one tensor (several dtypes or devices,
    sparse or non-contiguous ones) or there are fewer than two.
    """
    params = list(params)
    if len(params) < 2 or len({(p.dtype, p.device) for p in params}) != 1 or any(
            p.is_sparse or not p.is_contiguous() for p in params):
        return params
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    offset = 0
    for p in params:
        p.data = flat.data[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    flat.members = params
    _attach_grads(flat)
    return [flat]


def _attach_grads(flat: nn.Parameter) -> None:
    """Give ``flat`` a gradient if it has none and make each member's gradient its view of it
    (again, where something, such as ``Module.zero_grad()``, set it to None or replaced it)."""
    if flat.grad is None:
        flat.grad = torch.zeros_like(flat)
    offset, start, step = 0, flat.grad.data_ptr(), flat.element_size()
    for p in flat.members:
        if p.grad is None or p.grad.data_ptr() != start + offset * step:
            p.grad = flat.grad[offset:offset + p.numel()].view_as(p)
        offset += p.numel()


def zero_flat_grad(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad()`` for flattened parameters: gradients are zeroed in place, not set
    to None, and every member's gradient is (again) its view of the flat one, so that backward
    accumulates into it."""
    for group in optimizer.param_groups:  # torch's zero_grad alone costs as much as this loop
        for p in group["params"]:
            if p.grad is not None:
                p.grad.zero_()
            if hasattr(p, "members"):
                _attach_grads(p)


def unflatten(params: Sequence[nn.Parameter]) -> None:
    """Give every parameter its own storage again (a copy of its values) and no gradient, as
    before :func:`flatten`: needed before writing them to formats that refuse shared memory."""
    for p in params:
        p.data = p.data.clone()
        p.grad = None
