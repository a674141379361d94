"""Speed paths: faster computations of what the core computes plainly, behind one switch.

Every path here has a plain counterpart in the core that a reader reads first, and a test
that the two give the same values (and gradients):

============================  ==============================================  =========================================
flag                          fast path                                       plain computation
============================  ==============================================  =========================================
``feature_major_head``        :mod:`ebreg._fast.feature_major`: the energy    :meth:`ebreg.ebm.EnergyHead.forward`
                              head's narrow layers as ``W @ Z`` products
``batched_head``              the inputs split into groups, one batched       one product per layer
                              product per layer (several CPU threads)
``head_backward``             the head's layers as one autograd node with a   autograd, one node per operation
                              hand-written backward
``mixture_backward``          :mod:`ebreg._fast.mixture`: the mixture         :meth:`ebreg.proposals.GaussianMixture.log_prob`
                              log-density in place, closed-form backward
``fused_joint_nce``           :mod:`ebreg._fast.joint_nce`: both losses of    :func:`ebreg.objectives.joint_nce`
                              ``joint_nce`` from one exponentiation
``flat_adam``                 :mod:`ebreg._fast.flat_parameters`: Adam over   Adam over each parameter tensor
                              one flat tensor
``keep_freed_memory``         :mod:`ebreg._fast.allocator`: raise glibc's     glibc's defaults
                              malloc thresholds for the whole process
============================  ==============================================  =========================================

All are on by default except ``keep_freed_memory``, which changes the whole process and is
therefore opt-in (the command line and the benchmarks turn it on). The environment variable
``EBREG_FAST=0`` starts a process with all of them off; ``EBREG_KEEP_MALLOC=1`` turns the
malloc change on. In code, :func:`fast_paths` switches them for a block and
:func:`set_fast_paths` for the rest of the process::

    with ebreg.fast_paths(False):                    # the plain computations only
        ...
    with ebreg.fast_paths(feature_major_head=False):  # one path off, the others as they were
        ...
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["FastPaths", "fast_paths", "set_fast_paths", "current"]


@dataclass(frozen=True)
class FastPaths:
    """Which speed paths are on (see the table in :mod:`ebreg._fast`)."""

    feature_major_head: bool = True
    batched_head: bool = True
    head_backward: bool = True
    mixture_backward: bool = True
    fused_joint_nce: bool = True
    flat_adam: bool = True
    keep_freed_memory: bool = False

    @classmethod
    def from_environment(cls) -> FastPaths:
        """The defaults, less what ``EBREG_FAST=0`` and ``EBREG_KEEP_MALLOC`` say."""
        base = cls() if os.environ.get("EBREG_FAST", "1") != "0" else cls.all(False)
        return dataclasses.replace(base, keep_freed_memory=os.environ.get("EBREG_KEEP_MALLOC", "0") == "1")

    @classmethod
    def all(cls, enabled: bool) -> FastPaths:
        """Every path on, or every path off."""
        return cls(**{f.name: enabled for f in dataclasses.fields(cls)})


_current = FastPaths.from_environment()


def current() -> FastPaths:
    """The speed paths in force now."""
    return _current


def set_fast_paths(enabled: bool | None = None, **flags: bool) -> FastPaths:
    """Switch speed paths for the rest of the process; returns the previous setting.

    ``enabled``: True or False sets every flag first; then ``flags`` (names of
    :class:`FastPaths` fields) set single ones.
    """
    global _current
    previous = _current
    base = previous if enabled is None else FastPaths.all(bool(enabled))
    unknown = set(flags) - {f.name for f in dataclasses.fields(FastPaths)}
    if unknown:
        raise TypeError(f"unknown speed path(s) {sorted(unknown)}; choose from "
                        f"{[f.name for f in dataclasses.fields(FastPaths)]}")
    _current = dataclasses.replace(base, **{k: bool(v) for k, v in flags.items()})
    return previous


@contextmanager
def fast_paths(enabled: bool | None = None, **flags: bool) -> Iterator[FastPaths]:
    """:func:`set_fast_paths` for the ``with`` block only; yields the setting in force."""
    global _current
    previous = set_fast_paths(enabled, **flags)
    try:
        yield _current
    finally:
        _current = previous
