"""Joint variant B's two losses in one pass.

The plain computation is :func:`ebreg.objectives.joint_nce` (two log-sum-exps, differentiated
by autograd) with :func:`ebreg.inference.effective_sample_fraction` for the diagnostic;
``tests/test_objectives.py`` checks values and gradients against it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["JointNCE"]


class JointNCE(torch.autograd.Function):
    """:func:`ebreg.objectives.joint_nce`'s two losses from one set of log-weights
    ``d = f - log q``: ``JointNCE.apply(scores, log_q)`` with ``scores`` and ``log_q``
    ``(M + 1, n)``, row 0 the observed targets (``f_data``, ``log_q_data``) and rows 1..M the
    samples: one exponentiation instead of two log-sum-exps and their backward passes.

    Both are log-sum-exps of the samples' ``d`` (NCE adds the observed target's ``d_0``), so
    one exponentiation serves both: with ``e_m = exp(d_m - max d)``, ``s = sum e`` and
    ``L = log(exp(d_0) + sum exp d_m)``, the gradients are ``e exp(max d - L)`` for the samples'
    scores, ``exp(d_0 - L) - 1`` for the target's (NCE) and ``-e / s`` for the samples'
    ``log_q`` (KL); none for the target's ``log_q``. The gradients come back in the inputs'
    memory layout (for the input-major scores of :func:`ebreg._fast.feature_major.scores`,
    input-major). The two losses share one graph node: backpropagate through them (or either)
    once, or pass ``retain_graph=True``. A third output, without gradient, is the samples'
    effective sample size as a fraction of M (:func:`ebreg.inference.effective_sample_fraction`
    of ``d``), ``s^2 / (M sum e^2)``: the training engine's diagnostic, at the cost of one more
    pass.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, log_q: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # noqa: ANN001
        ctx.set_materialize_grads(False)  # an unused output sends no gradient to its network
        m = scores.shape[0] - 1
        d = scores - log_q  # (M + 1, n), in the scores' layout
        d0, top = d[0], d[1:].amax(0)
        e = d[1:].sub_(top).exp_()
        total_s = e.sum(0)
        log_s = total_s.log().add_(top)  # log sum_m exp d_m
        log_all = torch.logaddexp(log_s, d0)
        ess_fraction = total_s.square().div_(torch.linalg.vecdot(e, e, dim=0).mul_(m))
        ctx.mark_non_differentiable(ess_fraction)
        ctx.save_for_backward(e, total_s, top, log_all, d0)
        return log_all - d0, log_s - math.log(m), ess_fraction

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_nce: Tensor | None, g_kl: Tensor | None, _: None  # noqa: ANN001
                 ) -> tuple[Tensor | None, Tensor | None]:
        e, total_s, top, log_all, d0 = ctx.saved_tensors
        g_scores = g_log_q = None
        if g_nce is not None:
            g_scores = _with_first_row(e)
            torch.mul(g_nce, (d0 - log_all).exp_().sub_(1), out=g_scores[0])
            torch.mul(e, g_nce * (top - log_all).exp_(), out=g_scores[1:])
        if g_kl is not None:
            g_log_q = _with_first_row(e)
            g_log_q[0] = 0
            torch.mul(e, -g_kl / total_s, out=g_log_q[1:])
        return g_scores, g_log_q


def _with_first_row(rest: Tensor) -> Tensor:
    """An uninitialised ``(M + 1, n)`` tensor laid out as ``rest`` ``(M, n)`` is (input-major when
    ``rest`` is), so that ``out[1:]`` takes values shaped as ``rest`` without a strided copy."""
    m, n = rest.shape
    if rest.stride(0) == 1 and n > 1:
        return rest.new_empty(n, m + 1).T
    return rest.new_empty(m + 1, n)
