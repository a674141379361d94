"""Training objectives as pure functions returning per-example losses ``(n,)``.

Inputs are precomputed tensors: ``f_data`` ``(n,)`` the scores of the observed targets,
``f_samples`` ``(M, n)`` the scores of M proposal samples per example, ``log_q_data``
``(n,)`` and ``log_q_samples`` ``(M, n)`` the proposal's log-densities at those points.
The samples themselves are never reparameterised: callers draw them without gradient.
Every stop-gradient the method needs is applied here, so no caller can forget one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "ml_is",
    "nce",
    "proposal_kl",
    "joint_mlis",
    "joint_nce",
    "JointNCE",
    "mdn_nll",
    "teacher_student",
]


def _log_mean_exp(a: Tensor) -> Tensor:
    """``log(1/M sum_m exp a_m)`` over dim 0, in log space: ``(M, n)`` -> ``(n,)``."""
    return torch.logsumexp(a, 0) - math.log(a.shape[0])


def ml_is(f_data: Tensor, f_samples: Tensor, log_q_samples: Tensor) -> Tensor:
    """Importance-sampled negative log-likelihood (ML-IS).

    ``log(1/M sum_m exp(f_m - log q_m)) - f(x_i, y_i)``.

    Detached: nothing. With a fixed proposal ``log_q_samples`` carries no gradient; with a
    learned one, gradient flows into it and this is joint variant A (:func:`joint_mlis`).
    """
    return _log_mean_exp(f_samples - log_q_samples) - f_data


def nce(f_data: Tensor, log_q_data: Tensor, f_samples: Tensor, log_q_samples: Tensor) -> Tensor:
    """Noise-contrastive estimation with the observed target as sample 0.

    ``-[(f_0 - log q_0) - logsumexp_{m=0..M}(f_m - log q_m)]``, a cross-entropy over M + 1
    candidates. NCE+ is this function applied to a perturbed target ``y_0 = y_i + nu`` with
    ``log q_0`` the unscaled proposal's density of ``nu``
    (:meth:`ebreg.proposals.FixedGaussianMixture.perturb`).

    Detached: ``log_q_data`` and ``log_q_samples`` (the noise distribution is not trained by
    NCE); gradient reaches the scores only.
    """
    a0 = f_data - log_q_data.detach()
    a = torch.cat([a0.unsqueeze(0), f_samples - log_q_samples.detach()], 0)
    return torch.logsumexp(a, 0) - a0


def proposal_kl(f_samples: Tensor, log_q_samples: Tensor) -> Tensor:
    """The KL objective for the proposal (Result 1).

    ``log(1/M sum_m exp(sg[f_m] - log q_m))``; its gradient is the self-normalised
    importance-sampling estimate of the gradient of KL(p || q) with respect to q.

    Detached: ``f_samples`` (the EBM is the target, not trained by this loss).
    """
    return _log_mean_exp(f_samples.detach() - log_q_samples)


def joint_mlis(f_data: Tensor, f_samples: Tensor, log_q_samples: Tensor) -> Tensor:
    """Joint variant A: one ML-IS objective minimised over the EBM and the proposal.

    Its first term is :func:`proposal_kl` without the stop-gradient, so the proposal gets
    the KL gradient and the EBM the ML-IS gradient. Detached: nothing.
    """
    return ml_is(f_data, f_samples, log_q_samples)


def joint_nce(
    f_data: Tensor, log_q_data: Tensor, f_samples: Tensor, log_q_samples: Tensor
) -> tuple[Tensor, Tensor]:
    """Joint variant B: ``(NCE loss for the EBM, KL loss for the proposal)``, each ``(n,)``.

    Detached: the proposal's log-densities in the NCE term and the scores in the KL term, so
    the sum of the two trains each part by its own loss only. (:class:`JointNCE` computes the
    same two losses in one pass, for callers that backpropagate through them once.)
    """
    return nce(f_data, log_q_data, f_samples, log_q_samples), proposal_kl(f_samples, log_q_samples)


class JointNCE(torch.autograd.Function):
    """:func:`joint_nce`'s two losses from one set of log-weights ``d = f - log q``: the
    training engine's fast path, ``JointNCE.apply(scores, log_q)`` with ``scores`` and ``log_q``
    ``(M + 1, n)``, row 0 the observed targets (``f_data``, ``log_q_data``) and rows 1..M the
    samples: one exponentiation instead of two log-sum-exps and their backward passes.

    Both are log-sum-exps of the samples' ``d`` (NCE adds the observed target's ``d_0``), so
    one exponentiation serves both: with ``e_m = exp(d_m - max d)``, ``s = sum e`` and
    ``L = log(exp(d_0) + sum exp d_m)``, the gradients are ``e exp(max d - L)`` for the samples'
    scores, ``exp(d_0 - L) - 1`` for the target's (NCE) and ``-e / s`` for the samples'
    ``log_q`` (KL); none for the target's ``log_q``. The gradients come back in the inputs'
    memory layout (for the input-major scores of :meth:`ebreg.ebm.EnergyHead.forward_feature_major`,
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


def mdn_nll(log_q_data: Tensor) -> Tensor:
    """Negative log-likelihood of an MDN at the observed targets. Detached: nothing."""
    return -log_q_data


def teacher_student(
    f_data: Tensor, log_q_data: Tensor, f_samples: Tensor, log_q_samples: Tensor
) -> tuple[Tensor, Tensor]:
    """MDN with an energy-based teacher: ``(teacher loss, student loss)``, each ``(n,)``.

    Teacher (EBM ``f``): NCE with the student as noise distribution. Student (MDN ``q``):
    ``0.5 * KL objective + 0.5 * NLL``.

    Detached: the student's log-densities in the teacher's loss, the teacher's scores in the
    student's loss.
    """
    student = 0.5 * proposal_kl(f_samples, log_q_samples) + 0.5 * mdn_nll(log_q_data)
    return nce(f_data, log_q_data, f_samples, log_q_samples), student
