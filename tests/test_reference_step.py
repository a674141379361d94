"""The speed benchmark's yardstick (benchmarks/reference_step.py) trains what ebreg's joint_nce trains:
the same densities, samples from the same mixture, the same two losses reaching the same parameters."""

from __future__ import annotations

import math

import torch

from benchmarks.reference_step import ReferenceStyleModel
from ebreg.objectives import joint_nce
from ebreg.proposals import GaussianMixture


def _mixture(n: int = 5, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weights = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), 1)
    return weights, 2 * torch.randn(n, k, generator=g, dtype=torch.float64), 0.2 + torch.rand(n, k, generator=g, dtype=torch.float64)


def test_linear_space_density_equals_the_log_space_mixture() -> None:
    weights, means, stds = _mixture()
    y = torch.linspace(-3, 3, 7, dtype=torch.float64).expand(5, 7)
    ours = GaussianMixture(weights.log(), means.unsqueeze(-1), stds.unsqueeze(-1)).log_prob(y.T.unsqueeze(-1)).T
    torch.testing.assert_close(ReferenceStyleModel.log_density(y, weights, means, stds), ours)


def test_samples_follow_the_mixture() -> None:
    weights, means, stds = _mixture()
    torch.manual_seed(0)
    s = ReferenceStyleModel.sample(weights, means, stds, 40_000)
    mean = (weights * means).sum(1)
    var = (weights * (stds ** 2 + means ** 2)).sum(1) - mean ** 2
    torch.testing.assert_close(s.mean(1), mean, atol=4 * (var / 40_000).sqrt().max().item(), rtol=0)
    torch.testing.assert_close(s.var(1), var, rtol=0.03, atol=0)


def test_losses_are_joint_nce_and_each_reaches_its_own_networks() -> None:
    torch.manual_seed(0)
    model = ReferenceStyleModel()
    x, y = torch.randn(6, 1), torch.randn(6, 1)
    torch.manual_seed(1)
    nce, kl = model.losses(x, y, 16)
    torch.manual_seed(1)  # the same draws again, to recompute the losses with ebreg's objectives
    h = model.features(x)
    weights, means, stds = model.proposal(h)
    candidates = torch.cat([y, model.sample(weights, means, stds, 16)], 1)
    f, log_q = model.scores(h, candidates), model.log_density(candidates, weights, means, stds)
    want_nce, want_kl = joint_nce(f[:, 0], log_q[:, 0], f[:, 1:].T, log_q[:, 1:].T)
    torch.testing.assert_close(nce, want_nce.mean())
    torch.testing.assert_close(kl, want_kl.mean())
    assert math.isfinite(nce.item()) and math.isfinite(kl.item())

    proposal = {p for branch in (model.means, model.log_vars, model.logits) for p in branch.parameters()}
    for loss, reaches in ((nce, lambda p: p not in proposal), (kl, lambda p: p in proposal)):
        model.zero_grad()
        loss.backward(retain_graph=True)
        for p in model.parameters():
            assert (p.grad is not None and p.grad.abs().sum() > 0) == reaches(p)
