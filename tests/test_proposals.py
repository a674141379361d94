"""Proposals: mixture densities against scipy, samplers against their moments, bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import graph_nodes
from scipy import stats
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ebreg import fast_paths
from ebreg.proposals import FixedGaussianMixture, GaussianMixture, MDNHead, soft_clamp


def _random_mixture(n: int, k: int, d: int, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    loc = 2 * torch.randn(n, k, d, generator=g, dtype=torch.float64)
    scale = 0.3 + torch.rand(n, k, d, generator=g, dtype=torch.float64)
    return GaussianMixture(logits, loc, scale)


@pytest.mark.parametrize("d", [1, 3])
def test_mixture_log_prob_matches_scipy_loop(d: int) -> None:
    q = _random_mixture(5, 4, d)
    y = torch.randn(7, 5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = q.log_prob(y)
    assert got.shape == (7, 5)
    pi = torch.softmax(q.mixture_distribution.logits, -1).numpy()
    for m in range(7):
        for i in range(5):
            dens = sum(
                pi[i, k] * np.prod(stats.norm.pdf(y[m, i].numpy(), q.loc[i, k].numpy(), q.scale[i, k].numpy()))
                for k in range(4)
            )
            assert got[m, i].item() == pytest.approx(math.log(dens), abs=1e-10)


@pytest.mark.parametrize("d", [1, 2])
def test_mixture_log_prob_and_gradients_equal_torchs_mixture(d: int) -> None:
    # the fast path: same values and parameter gradients as MixtureSameFamily, any batch shape
    torch.manual_seed(4)
    params = [torch.randn(6, 3, requires_grad=True), torch.randn(6, 3, d, requires_grad=True),
              torch.rand(6, 3, d).add(0.2).requires_grad_()]
    y = torch.randn(2, 5, 6, d)
    ours = GaussianMixture(*params).log_prob(y)
    ref = MixtureSameFamily(Categorical(logits=params[0]), Independent(Normal(params[1], params[2]), 1)).log_prob(y)
    assert ours.shape == ref.shape == (2, 5, 6)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours.sum(), params)
    g_ref = torch.autograd.grad(ref.sum(), params)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


def test_mixture_log_prob_is_finite_far_in_the_tails() -> None:
    # a sum of densities in linear space underflows to log(0) here; log space does not
    q = GaussianMixture(torch.zeros(1, 2), torch.tensor([[[0.0], [1.0]]]), torch.full((1, 2, 1), 0.01))
    lp = q.log_prob(torch.tensor([[[5.0]]]))
    assert torch.isfinite(lp).all() and lp.item() < -50_000


@pytest.mark.parametrize("d,common", [(1, False), (3, False), (1, True), (3, True)])
def test_sampler_moments_and_component_frequencies(d: int, common: bool) -> None:
    q = _random_mixture(3, 4, d, seed=2)
    g = torch.Generator().manual_seed(3)
    ys = q.sample((200_000,), generator=g, common_noise=common)
    assert ys.shape == (200_000, 3, d)
    # mixture mean and variance in closed form; tolerance: 5 standard errors
    pi = torch.softmax(q.mixture_distribution.logits, -1).unsqueeze(-1)
    mean = (pi * q.loc).sum(1)
    var = (pi * (q.scale**2 + q.loc**2)).sum(1) - mean**2
    se = (var / ys.shape[0]).sqrt()
    assert ((ys.mean(0) - mean).abs() < 5 * se).all()
    assert torch.allclose(ys.var(0), var, rtol=0.02)


def test_sampler_is_reproducible_with_a_generator() -> None:
    q = _random_mixture(2, 3, 2)
    a = q.sample((10,), generator=torch.Generator().manual_seed(5))
    b = q.sample((10,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not a.requires_grad


@pytest.mark.parametrize("d", [1, 3])
def test_prepended_values_come_first_in_a_layout_log_prob_reads_as_is(d: int) -> None:
    q = _random_mixture(4, 3, d)
    y = torch.randn(4, d, dtype=torch.float64)
    both = q.sample((16,), generator=torch.Generator().manual_seed(5), prepend=y)
    plain = q.sample((16,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(both, torch.cat([y.unsqueeze(0), plain]))
    assert both.permute(1, 2, 0).is_contiguous()  # log_prob's (n, D, S) layout
    assert torch.equal(q.log_prob(both), q.log_prob(both.contiguous()))
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    with pytest.raises(ValueError, match="prepend needs"):
        q.sample((2, 8), generator=gen, prepend=y)
    with pytest.raises(ValueError, match="prepend needs"):
        q.sample((8,), generator=gen, prepend=y[:3])
    assert torch.equal(gen.get_state(), state)  # refused before drawing anything


def test_common_noise_draws_do_not_depend_on_the_other_rows() -> None:
    q = _random_mixture(5, 3, 2, seed=4)
    sub = GaussianMixture(q.mixture_distribution.logits[[3, 1]], q.loc[[3, 1]], q.scale[[3, 1]])
    full = q.sample((64,), generator=torch.Generator().manual_seed(1), common_noise=True)
    part = sub.sample((64,), generator=torch.Generator().manual_seed(1), common_noise=True)
    assert torch.equal(full[:, [3, 1]], part)



def test_common_noise_picks_components_in_proportion() -> None:
    # tiny scales: each draw sits on its component's mean, so components can be counted
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    loc = torch.tensor([0.0, 10.0, 20.0]).view(1, 3, 1).expand(2, 3, 1)
    q = GaussianMixture(logits, loc, torch.full((2, 3, 1), 1e-6))
    ys = q.sample((100,), generator=torch.Generator().manual_seed(0), common_noise=True)
    counts = torch.stack([(ys.squeeze(-1).round() == c).sum(0) for c in (0.0, 10.0, 20.0)], 1)
    expected = 100 * torch.softmax(logits, -1)
    assert ((counts - expected).abs() <= 1).all(), counts


def test_cdf_matches_scipy() -> None:
    q = _random_mixture(4, 3, 1)
    y = torch.linspace(-4, 4, 9, dtype=torch.float64).view(9, 1, 1).expand(9, 4, 1)
    pi = torch.softmax(q.mixture_distribution.logits, -1).numpy()
    expected = sum(pi[None, :, k] * stats.norm.cdf(y[..., 0].numpy(), q.loc[:, k, 0].numpy(),
                                                  q.scale[:, k, 0].numpy()) for k in range(3))
    assert np.allclose(q.cdf(y).numpy(), expected, atol=1e-12)
    with pytest.raises(ValueError, match="D = 1"):
        _random_mixture(2, 2, 2).cdf(torch.zeros(2, 2))


def test_fixed_mixture_density_by_hand() -> None:
    fixed = FixedGaussianMixture([0.1, 0.8])
    center = torch.tensor([[0.5]], dtype=torch.float64)
    y = torch.tensor([[[0.7]]], dtype=torch.float64)
    expected = 0.5 * stats.norm.pdf(0.7, 0.5, 0.1) + 0.5 * stats.norm.pdf(0.7, 0.5, 0.8)
    assert fixed(center).log_prob(y).item() == pytest.approx(math.log(expected), rel=1e-12)
    with pytest.raises(ValueError, match="positive"):
        FixedGaussianMixture([0.1, -1.0])


def test_nce_plus_perturbation_scale_and_density() -> None:
    fixed = FixedGaussianMixture([0.4, 3.2])
    y = torch.zeros(100_000, 1, dtype=torch.float64)
    y0, log_q0 = fixed.perturb(y, beta=0.1, generator=torch.Generator().manual_seed(0))
    # nu ~ 1/2 N(0, 0.04^2) + 1/2 N(0, 0.32^2): variance = (0.04^2 + 0.32^2) / 2
    assert y0.var().item() == pytest.approx((0.04**2 + 0.32**2) / 2, rel=0.02)
    # the density is the *unscaled* proposal's at the offset
    assert torch.allclose(log_q0, fixed(torch.zeros_like(y)).log_prob(y0))


def test_soft_clamp_bounds_and_unit_slope_at_centre() -> None:
    x = torch.tensor([-1e6, 0.0, 1e6], requires_grad=True)
    out = soft_clamp(x, -2.0, 2.0)
    assert out[0] > -2.0 - 1e-6 and out[2] < 2.0 + 1e-6 and out[1] == 0.0
    out.sum().backward()
    assert x.grad[1].item() == pytest.approx(1.0)


@pytest.mark.parametrize("d", [1, 3])
def test_mdn_head_shapes_bounds_and_gradients(d: int) -> None:
    torch.manual_seed(0)
    head = MDNHead(6, d, components=4, hidden=(8,), min_scale=1e-2, max_scale=10.0)
    h = 1e3 * torch.randn(5, 6)  # extreme features must not produce zero or huge widths
    q = head(h)
    assert q.batch_shape == (5,) and q.event_shape == (d,)
    assert (q.scale >= 1e-2 * 0.999).all() and (q.scale <= 10.0 * 1.001).all()
    q.log_prob(torch.randn(3, 5, d)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def _plain_log_prob(q: GaussianMixture, value: torch.Tensor) -> torch.Tensor:
    """The mixture log-density written out as a formula, by autograd's own operations."""
    c = q.scale.reciprocal() * math.sqrt(0.5)
    const = (torch.log_softmax(q.mixture_distribution.logits, -1) + c.log().sum(-1)
             - 0.5 * q.loc.shape[-1] * math.log(math.pi))
    return torch.logsumexp(const - ((value.unsqueeze(-2) - q.loc) * c).square().sum(-1), -1)


@pytest.mark.parametrize("dim, lead", [(1, (64,)), (3, (64,)), (2, ()), (1, (5, 7))])
def test_closed_form_mixture_gradient_equals_autograd(dim: int, lead: tuple) -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    loc = torch.randn(6, 4, dim, requires_grad=True)
    log_scale = (0.5 * torch.randn(6, 4, dim)).requires_grad_()
    value, weight = 2 * torch.randn(*lead, 6, dim), torch.randn(*lead, 6)
    q = GaussianMixture(logits, loc, log_scale.exp())
    fast, plain = q.log_prob(value), _plain_log_prob(q, value)
    with fast_paths(mixture_backward=False):
        core = q.log_prob(value)
    assert any("MixtureLogProb" in name for name in graph_nodes(fast))
    assert not any("MixtureLogProb" in name for name in graph_nodes(core))
    assert torch.allclose(fast, plain, atol=1e-5) and torch.allclose(core, plain, atol=1e-5)
    with torch.no_grad():  # in place, without a graph
        assert torch.allclose(q.log_prob(value), plain, atol=1e-5)
    params = [logits, loc, log_scale]
    g_fast = torch.autograd.grad((fast * weight).sum(), params, retain_graph=True)
    g_plain = torch.autograd.grad((plain * weight).sum(), params, retain_graph=True)
    g_core = torch.autograd.grad((core * weight).sum(), params)
    for a, b, c in zip(g_fast, g_plain, g_core):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4) and torch.allclose(c, b, atol=1e-5, rtol=1e-4)


def test_mixture_log_prob_keeps_gradients_for_the_value() -> None:
    loc = torch.zeros(1, 2, 1, requires_grad=True)
    q = GaussianMixture(torch.zeros(1, 2), loc, torch.ones(1, 2, 1))
    value = torch.full((3, 1, 1), 0.5, requires_grad=True)
    (grad,) = torch.autograd.grad(q.log_prob(value).sum(), [value])
    assert torch.allclose(grad, torch.full_like(grad, -0.5))  # d/dv log N(v; 0, 1) = -v


@pytest.mark.parametrize("fast", [True, False])
def test_mixture_log_prob_far_from_every_component_is_minus_infinity(fast: bool) -> None:
    q = GaussianMixture(torch.zeros(1, 2, requires_grad=True), torch.zeros(1, 2, 1), torch.full((1, 2, 1), 1e-3))
    with fast_paths(mixture_backward=fast):
        out = q.log_prob(torch.full((3, 1, 1), 1e30))
    assert torch.equal(out, torch.full((3, 1), -math.inf))
