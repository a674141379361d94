"""Objectives: against slow explicit loops, the detach map, and Result 1 numerically."""

from __future__ import annotations

import math

import pytest
import torch

from ebreg import objectives as obj
from ebreg._fast.joint_nce import JointNCE
from ebreg.inference import effective_sample_fraction

M, N = 6, 4


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)  # noqa: E731
    return {"f_data": r(N), "log_q_data": r(N), "f_samples": r(M, N), "log_q_samples": r(M, N)}


def _loop_ml_is(t: dict) -> list[float]:
    t = {k: v.detach() for k, v in t.items()}
    out = []
    for i in range(N):
        s = sum(math.exp(float(t["f_samples"][m, i] - t["log_q_samples"][m, i])) for m in range(M))
        out.append(math.log(s / M) - float(t["f_data"][i]))
    return out


def _loop_nce(t: dict) -> list[float]:
    t = {k: v.detach() for k, v in t.items()}
    out = []
    for i in range(N):
        a0 = float(t["f_data"][i] - t["log_q_data"][i])
        terms = [a0] + [float(t["f_samples"][m, i] - t["log_q_samples"][m, i]) for m in range(M)]
        out.append(-(a0 - math.log(sum(math.exp(a) for a in terms))))
    return out


def _loop_kl(t: dict) -> list[float]:
    t = {k: v.detach() for k, v in t.items()}
    return [
        math.log(sum(math.exp(float(t["f_samples"][m, i] - t["log_q_samples"][m, i])) for m in range(M)) / M)
        for i in range(N)
    ]


def test_losses_match_explicit_loops() -> None:
    t = _inputs()
    assert obj.ml_is(t["f_data"], t["f_samples"], t["log_q_samples"]).tolist() == pytest.approx(_loop_ml_is(t), rel=1e-12)
    assert obj.joint_mlis(t["f_data"], t["f_samples"], t["log_q_samples"]).tolist() == pytest.approx(_loop_ml_is(t), rel=1e-12)
    assert obj.nce(**t).tolist() == pytest.approx(_loop_nce(t), rel=1e-12)
    assert obj.proposal_kl(t["f_samples"], t["log_q_samples"]).tolist() == pytest.approx(_loop_kl(t), rel=1e-12)
    ebm, kl = obj.joint_nce(**t)
    assert ebm.tolist() == pytest.approx(_loop_nce(t), rel=1e-12)
    assert kl.tolist() == pytest.approx(_loop_kl(t), rel=1e-12)
    assert obj.mdn_nll(t["log_q_data"]).tolist() == pytest.approx((-t["log_q_data"]).tolist())
    teacher, student = obj.teacher_student(**t)
    assert teacher.tolist() == pytest.approx(_loop_nce(t), rel=1e-12)
    expected = [0.5 * k - 0.5 * float(lq) for k, lq in zip(_loop_kl(t), t["log_q_data"].detach())]
    assert student.tolist() == pytest.approx(expected, rel=1e-12)


def test_nce_by_hand_two_candidates() -> None:
    # one noise sample, all log q = 0: loss = log(e^f0 + e^f1) - f0
    f0, f1 = 1.0, 2.0
    loss = obj.nce(torch.tensor([f0]), torch.zeros(1), torch.tensor([[f1]]), torch.zeros(1, 1))
    assert loss.item() == pytest.approx(math.log(math.exp(f0) + math.exp(f1)) - f0)


def _grads(loss: torch.Tensor, t: dict) -> dict[str, bool]:
    names = list(t)
    gs = torch.autograd.grad(loss.sum(), [t[k] for k in names], allow_unused=True)
    return {k: g is not None and bool(g.abs().sum() > 0) for k, g in zip(names, gs)}


def test_detach_map() -> None:
    t = _inputs(1)
    # NCE trains the scores only: the noise distribution gets nothing
    assert _grads(obj.nce(**t), t) == {"f_data": True, "log_q_data": False,
                                       "f_samples": True, "log_q_samples": False}
    # the KL objective trains the proposal only
    sub = {k: t[k] for k in ("f_samples", "log_q_samples")}
    assert _grads(obj.proposal_kl(**sub), sub) == {"f_samples": False, "log_q_samples": True}
    # variant A: one objective, gradient to both
    sub = {k: t[k] for k in ("f_data", "f_samples", "log_q_samples")}
    assert all(_grads(obj.joint_mlis(**sub), sub).values())
    # variant B and the teacher pair: each part reaches only its own network
    ebm, kl = obj.joint_nce(**t)
    assert _grads(ebm, t) == {"f_data": True, "log_q_data": False, "f_samples": True, "log_q_samples": False}
    assert _grads(kl, t) == {"f_data": False, "log_q_data": False, "f_samples": False, "log_q_samples": True}
    teacher, student = obj.teacher_student(**t)
    assert _grads(teacher, t) == {"f_data": True, "log_q_data": False, "f_samples": True, "log_q_samples": False}
    assert _grads(student, t) == {"f_data": False, "log_q_data": True, "f_samples": False, "log_q_samples": True}


def test_result_1_gradient_matches_closed_form_kl_gradient() -> None:
    """f = log N(y; a, s^2), q = N(mu, sigma^2): autograd of J_KL vs d KL(p||q)."""
    a, s = 0.5, 1.0
    mu = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(math.log(1.5), dtype=torch.float64, requires_grad=True)
    q = torch.distributions.Normal(mu, log_sigma.exp())
    g = torch.Generator().manual_seed(0)
    y = (mu + log_sigma.exp() * torch.randn(100_000, 1, generator=g, dtype=torch.float64)).detach()
    f = torch.distributions.Normal(a, s).log_prob(y)
    loss = obj.proposal_kl(f, q.log_prob(y)).sum()
    d_mu, d_log_sigma = torch.autograd.grad(loss, [mu, log_sigma])
    # KL(p||q) = log(sigma/s) + (s^2 + (a - mu)^2) / (2 sigma^2) - 1/2
    sig2 = 1.5**2
    assert d_mu.item() == pytest.approx(-(a - 0.0) / sig2, rel=0.03)
    assert d_log_sigma.item() == pytest.approx(1 - (s**2 + a**2) / sig2, rel=0.03)


def _stacked(t: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """JointNCE's inputs ``(M + 1, n)``: the target's row first, then the samples'."""
    return (torch.cat([t["f_data"].unsqueeze(0), t["f_samples"]]),
            torch.cat([t["log_q_data"].unsqueeze(0), t["log_q_samples"]]))


@pytest.mark.parametrize("input_major", [False, True])
@pytest.mark.parametrize("spread", [1.0, 300.0])
def test_fused_joint_nce_equals_nce_and_kl_with_their_gradients(spread: float, input_major: bool) -> None:
    # JointNCE computes both losses from one exponentiation; spread 300 puts log-weights far
    # beyond exp's range, where only a max-shifted computation stays finite
    t = {k: (v * spread).detach().requires_grad_() for k, v in _inputs(2).items()}
    w1, w2 = torch.randn(N, dtype=torch.float64), torch.randn(N, dtype=torch.float64)
    scores, log_q = _stacked(t)
    if input_major:  # the energy head's layout: each input's candidates contiguous
        scores, log_q = (v.T.contiguous().T for v in (scores, log_q))
    ebm, kl, ess = JointNCE.apply(scores, log_q)
    plain_ebm, plain_kl = obj.joint_nce(**t)
    assert torch.allclose(ebm, plain_ebm, rtol=1e-12) and torch.allclose(kl, plain_kl, rtol=1e-12)
    plain_ess = effective_sample_fraction(t["f_samples"].detach() - t["log_q_samples"].detach())
    assert torch.allclose(ess, plain_ess, rtol=1e-12) and not ess.requires_grad
    names = list(t)
    fused = torch.autograd.grad((w1 * ebm + w2 * kl).sum(), [scores, log_q])
    assert all(g.stride() == v.stride() for g, v in zip(fused, (scores, log_q)))  # no transposing copy
    plain = torch.autograd.grad((w1 * plain_ebm + w2 * plain_kl).sum(), [t[k] for k in names], allow_unused=True)
    plain = dict(zip(names, (torch.zeros(N, dtype=torch.float64) if g is None else g for g in plain)))
    for a, b in zip(fused, _stacked(plain)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert torch.equal(fused[1][0], torch.zeros(N, dtype=torch.float64))  # NCE's log q is detached


def test_fused_joint_nce_sends_no_gradient_through_an_unused_loss() -> None:
    scores, log_q = (v.detach().requires_grad_() for v in _stacked(_inputs(3)))
    ebm, kl, _ = JointNCE.apply(scores, log_q)
    g_scores, g_log_q = torch.autograd.grad(kl.sum(), [scores, log_q], allow_unused=True)
    # not even zeros for the scores: the EBM's parameters get no gradient from the KL term
    assert g_scores is None and g_log_q[1:].abs().sum() > 0
