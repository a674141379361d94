"""The mixture log-density in place, with a closed-form backward.

The plain computation is :meth:`ebreg.proposals.GaussianMixture.log_prob`: component log-terms
and ``torch.logsumexp``, differentiated by autograd. Here, for values that need no gradient,
the log-terms are overwritten in place and, when gradients reach the mixture's parameters,
:class:`MixtureLogProb` gives them from the responsibilities in fewer passes than autograd's
backward (``tests/test_proposals.py`` checks both against the plain computation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import proposals

__all__ = ["log_sum_exp", "MixtureLogProb"]


def log_sum_exp(v: Tensor, const: Tensor, loc: Tensor, c: Tensor) -> Tensor:
    """``log sum_k exp(const_k - sum_d ((v_d - mu_kd) c_kd)^2)`` ``(n, S)`` for values ``v``
    ``(n, D, S)`` that need no gradient (see :func:`ebreg.proposals.component_log_terms`)."""
    if torch.is_grad_enabled() and (const.requires_grad or loc.requires_grad or c.requires_grad):
        return MixtureLogProb.apply(v, const, loc, c)
    return _log_sum_exp_components(proposals.component_log_terms(v.contiguous(), const, loc, c, True)[0], False)[0]


def _log_sum_exp_components(s: Tensor, responsibilities: bool = True) -> tuple[Tensor, Tensor | None]:
    """``log sum_k exp s_k`` ``(n, S)`` and (unless told not to) the responsibilities
    ``softmax_k s`` ``(n, K, S)`` of fresh log-terms ``s`` ``(n, K, S)`` (overwritten)."""
    top = s.amax(1, keepdim=True).nan_to_num_(neginf=0.0)  # all -inf: log 0 = -inf, not NaN
    e = s.sub_(top).exp_()
    total = e.sum(1, keepdim=True)
    return total.log().add_(top).squeeze(1), e.div_(total) if responsibilities else None


class MixtureLogProb(torch.autograd.Function):
    """``log sum_k exp(const_k - sum_d ((v_d - mu_kd) c_kd)^2)`` with a closed-form backward.

    Inputs: values ``v`` ``(n, D, S)`` (no gradient; any strides), ``const`` ``(n, K)``,
    ``loc`` and ``c`` ``(n, K, D)``; output ``(n, S)``. With responsibilities ``r = softmax_k``
    and ``t = (v - mu) c``, the gradients summed over the S values are ``sum g r`` for const,
    ``2 c sum g r t`` for mu and ``-2 / c sum g r t^2`` for c.
    """

    @staticmethod
    def forward(ctx, v: Tensor, const: Tensor, loc: Tensor, c: Tensor) -> Tensor:  # noqa: ANN001
        s, t = proposals.component_log_terms(v.contiguous(), const, loc, c, True)
        out, r = _log_sum_exp_components(s)
        ctx.save_for_backward(r, t, c)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor, Tensor, Tensor]:  # noqa: ANN001
        r, t, c = ctx.saved_tensors
        gr = r.mul_(grad.unsqueeze(1))  # (n, K, S)
        gt = gr.unsqueeze(2) * t  # (n, K, D, S)
        return None, gr.sum(-1), 2 * c * gt.sum(-1), -2 * gt.mul_(t).sum(-1) / c
