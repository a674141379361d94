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
    the sum of the two trains each part by its own loss only.
    (:class:`ebreg._fast.joint_nce.JointNCE` computes the same two losses in one pass.)
    """
    return nce(f_data, log_q_data, f_samples, log_q_samples), proposal_kl(f_samples, log_q_samples)


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
