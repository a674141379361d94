"""Stopping training at a non-finite loss without making the host wait for the device."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the step and the term."""


#: a deferred check reads the device's record once per this many steps (and at each epoch's end)
DEFERRED_CHECK_EVERY = 50


class FiniteLossCheck:
    """Raises :class:`NonFiniteLossError` when a step's loss is NaN or infinite.

    Immediate (the CPU, where reading a value costs nothing): the loss is read every step and
    the error raised before the backward pass. Deferred (accelerators, where reading a value
    makes the host wait until the device has run everything queued): nothing is read in the
    step; the fused Adam is told to skip the step's update on the device (its ``found_inf``),
    the first bad step's loss terms are kept on the device, and :meth:`raise_if_seen` reads
    that record (the engine calls it every :data:`DEFERRED_CHECK_EVERY` steps and at each
    epoch's end). Either way no update is made from a non-finite loss.
    """

    def __init__(self, skipping: torch.optim.Optimizer | None) -> None:
        """``skipping``: the fused optimiser whose update a bad step skips (deferred), or None
        (immediate)."""
        self.skipping = skipping
        self._positions: list[tuple[int, int, int]] = []  # (step, epoch, batch) since the last read
        self._names: list[str] = []
        self._first: Tensor | None = None  # index into _positions of the first bad step, or -1
        self._values: Tensor | None = None  # that step's terms (K,)

    def __call__(self, loss: Tensor, terms: dict[str, Tensor], position: tuple[int, int, int]) -> None:
        """Check a step's ``loss`` (scalar), the sum of ``terms``, at ``position`` (step, epoch,
        batch), before its backward pass."""
        if self.skipping is None:
            if not math.isfinite(loss.item()):
                raise _error(position, list(terms), [float(v.detach()) for v in terms.values()])
            return
        if len(self._positions) >= DEFERRED_CHECK_EVERY:
            self.raise_if_seen()
        bad = loss.detach().isfinite().logical_not()
        self.skipping.found_inf = bad.float()  # read by the fused Adam's step
        values = torch.stack([v.detach() for v in terms.values()])
        if self._first is None:  # the first step since the last read
            self._first = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._values = torch.zeros_like(values)
            self._names = list(terms)
        first_bad = bad & (self._first < 0)
        self._first = torch.where(first_bad, len(self._positions), self._first)
        self._values = torch.where(first_bad, values, self._values)
        self._positions.append(position)

    def raise_if_seen(self) -> None:
        """Read the deferred record (one wait for the device) and raise if a step was bad."""
        if self._first is None:
            return
        first, values, positions = int(self._first), self._values, self._positions
        self._first, self._values, self._positions = None, None, []
        if first >= 0:
            raise _error(positions[first], self._names, values.tolist())


def defers_finite_check(device: torch.device) -> bool:
    """Whether training on ``device`` checks losses deferred (every device but the CPU)."""
    return device.type != "cpu"


def _error(position: tuple[int, int, int], names: list[str], values: list[float]) -> NonFiniteLossError:
    step, epoch, batch = position
    detail = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, values))
    return NonFiniteLossError(f"non-finite training loss at step {step} (epoch {epoch}, batch {batch}): {detail}")
