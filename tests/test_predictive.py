"""The predictive distributions' contract: scipy's names and values, one shape rule, row
selection, marginals against closed forms and quadrature, one-pass summaries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scoringrules
import torch
from scipy import integrate, stats
from torch import Tensor, nn

from ebreg import predictive
from ebreg.predictive import MixturePredictive, PredictiveDistribution, SNISPredictive
from ebreg.proposals import GaussianMixture


def _normal(loc: np.ndarray, scale: np.ndarray, squeeze: bool = True) -> MixturePredictive:
    """One Gaussian per row: a one-component mixture."""
    loc_t, scale_t = (torch.as_tensor(a, dtype=torch.float64).reshape(-1, 1, 1) for a in (loc, scale))
    return MixturePredictive(GaussianMixture(torch.zeros(len(loc), 1, dtype=torch.float64), loc_t, scale_t), squeeze)


def _mixture(n: int = 6, k: int = 3, d: int = 1, seed: int = 0, squeeze: bool = True) -> MixturePredictive:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    loc = 3 * torch.randn(n, k, d, generator=g, dtype=torch.float64)
    scale = 0.3 + torch.rand(n, k, d, generator=g, dtype=torch.float64)
    return MixturePredictive(GaussianMixture(logits, loc, scale), squeeze)


def test_a_one_component_mixture_agrees_with_scipy_norm() -> None:
    rng = np.random.default_rng(0)
    loc, scale, y = rng.normal(size=8) * 3, rng.uniform(0.2, 2, 8), rng.normal(size=8) * 3
    d, ref = _normal(loc, scale), stats.norm(loc, scale)
    for got, want in [(d.mean(), ref.mean()), (d.std(), ref.std()), (d.var(), ref.var()), (d.median(), ref.median()),
                      (d.ppf(0.9), ref.ppf(0.9)), (d.cdf(y), ref.cdf(y)), (d.pdf(y), ref.pdf(y)),
                      (d.logpdf(y), ref.logpdf(y)), (d.interval(0.8), ref.interval(0.8)),
                      (d.crps(y), scoringrules.crps_normal(y, loc, scale, backend="numpy"))]:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    levels = np.array([[0.05], [0.5], [0.95]])
    np.testing.assert_allclose(d.ppf(levels), ref.ppf(levels), atol=1e-6)  # (3, 8): levels broadcast like scipy
    draws = d.sample(20_000, random_state=0)
    assert draws.shape == (20_000, 8)
    assert np.all(np.abs(draws.mean(0) - loc) < 5 * scale / np.sqrt(20_000))


def test_shapes_follow_one_rule() -> None:
    squeezed, column, two = _mixture(5), _mixture(5, squeeze=False), _mixture(5, d=2, squeeze=False)
    assert (squeezed.batch_shape, squeezed.event_shape, column.event_shape, two.event_shape) == ((5,), (), (1,), (2,))
    assert squeezed.mean().shape == (5,) and column.mean().shape == (5, 1) and two.mean().shape == (5, 2)
    assert squeezed.sample(3).shape == (3, 5) and column.sample(3).shape == (3, 5, 1) and two.sample(3).shape == (3, 5, 2)
    assert two.cov().shape == (5, 2, 2) and squeezed.cov().shape == (5, 1, 1)
    assert column.ppf(0.3).shape == (5, 1) and column.logpdf(np.zeros((5, 1))).shape == (5,)
    grid = np.linspace(-2, 2, 7)
    assert squeezed.logpdf(grid[:, None]).shape == (7, 5) and column.cdf(grid[:, None, None]).shape == (7, 5)
    assert two.logpdf(np.zeros((4, 5, 2))).shape == (4, 5) and two.energy_score(np.zeros((5, 2))).shape == (5,)
    one = two[2]
    assert (one.batch_shape, one.mean().shape, one.cov().shape, one.sample(3).shape) == ((), (2,), (2, 2), (3, 2))
    assert one.logpdf(np.zeros(2)).shape == () and one.logpdf(np.zeros((4, 2))).shape == (4,)
    with pytest.raises(TypeError, match="len"):
        len(one)
    with pytest.raises(ValueError, match=r"must end in the event shape \(2,\), got shape \(5,\)"):
        two.logpdf(np.zeros(5))
    with pytest.raises(ValueError, match="does not broadcast against the 5 rows"):
        squeezed.logpdf(np.zeros(4))
    with pytest.raises(ValueError, match="ask marginal"):
        two.cdf(np.zeros((5, 2)))


def test_rows_are_selected_like_an_array() -> None:
    d = _mixture(6)
    mean, y = d.mean(), np.linspace(-1, 1, 6)
    mask = np.array([True, False, True, False, False, True])
    assert len(d) == 6 and len(d[1:4]) == 3 and len(d[mask]) == 3 and len(d[[5, 0]]) == 2
    assert isinstance(d[mask], MixturePredictive) and isinstance(d[0], PredictiveDistribution)
    np.testing.assert_array_equal(d[mask].mean(), mean[mask])
    np.testing.assert_array_equal(d[[5, 0]].logpdf(y[[5, 0]]), d.logpdf(y)[[5, 0]])
    assert d[-1].mean() == mean[-1] and d[2].ppf(0.7) == d.ppf(0.7)[2]
    assert repr(d) == "MixturePredictive(batch_shape=(6,), event_shape=(), components=3)"
    for bad, message in [(6, "out of range"), (mask[:4], "boolean mask must have shape"), ([0, 9], "out of range"),
                         (1.5, "selected by an integer")]:
        with pytest.raises(IndexError, match=message):
            d[bad]


def test_mixture_covariance_and_marginals_by_hand() -> None:
    d = _mixture(4, k=2, d=2, squeeze=False)
    m = d.mixture
    w, loc, scale = m.mixture_distribution.probs.numpy(), m.loc.numpy(), m.scale.numpy()
    mean = np.einsum("nk,nkd->nd", w, loc)
    second = np.einsum("nk,nkd,nke->nde", w, loc, loc) + np.einsum("nk,nkd->nd", w, scale ** 2)[:, :, None] * np.eye(2)
    np.testing.assert_allclose(d.cov(), second - mean[:, :, None] * mean[:, None, :], atol=1e-12)
    first = d.marginal(1)
    assert first.event_shape == () and first.batch_shape == (4,)
    y = np.linspace(-2, 2, 4)
    want = np.log(np.sum(w * stats.norm(loc[..., 1], scale[..., 1]).pdf(y[:, None]), 1))
    np.testing.assert_allclose(first.logpdf(y), want, atol=1e-10)
    np.testing.assert_allclose(first.var(), np.diagonal(d.cov(), axis1=1, axis2=2)[:, 1], atol=1e-10)
    with pytest.raises(IndexError, match="target 2 out of range for 2 targets"):
        d.marginal(2)


def test_crps_and_energy_score_agree_in_one_dimension() -> None:
    d, y = _mixture(6), np.linspace(-3, 3, 6)
    crps = d.crps(y)
    draws = d.sample(40_000, random_state=1)  # (m, n)
    np.testing.assert_allclose(crps, scoringrules.crps_ensemble(y, draws.T, backend="numpy"), atol=0.03)
    # the energy score's pairwise form from 1,000 draws
    np.testing.assert_allclose(MixturePredictive._energy_score(d, torch.as_tensor(y[:, None])), crps, atol=0.15)
    np.testing.assert_allclose(d.crps(np.stack([y, y + 1])), np.stack([crps, d.crps(y + 1)]))


def test_draws_repeat_with_a_seed_and_differ_without() -> None:
    d = _mixture(3)
    assert np.array_equal(d.sample(4, random_state=7), d.sample(4, random_state=7))
    assert np.array_equal(d.sample(4, random_state=np.random.default_rng(1)),
                          d.sample(4, random_state=np.random.default_rng(1)))
    assert not np.array_equal(d.sample(4), d.sample(4))
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="number of draws must be a non-negative integer"):
            d.sample(bad)
    with pytest.raises(ValueError, match="random_state must be"):
        d.sample(2, random_state="seven")
    with pytest.raises(ValueError, match="confidence must lie in"):
        d.interval(1.0)


def test_the_previous_names_warn_and_keep_their_layouts() -> None:
    d, y = _mixture(4), np.zeros(4)
    with pytest.warns(FutureWarning, match="use std"):
        assert np.array_equal(d.stddev, d.std())
    with pytest.warns(FutureWarning, match="use logpdf"):
        assert np.array_equal(d.log_prob(y), d.logpdf(y))
    with pytest.warns(FutureWarning, match="use ppf"):
        assert np.array_equal(d.quantile([0.2, 0.6]), d.ppf([[0.2], [0.6]]).T)  # rows first, as before


class GaussianEnergy(nn.Module):
    """``f(x, y) = -y' A y / 2`` (a Gaussian with covariance ``A^-1``, whatever x), with a broad
    diagonal two-component proposal: an EBM whose every marginal is known."""

    def __init__(self, cov: np.ndarray) -> None:
        super().__init__()
        self.precision = torch.as_tensor(np.linalg.inv(cov), dtype=torch.float32)
        self.energy = SimpleNamespace(target_dim=len(cov))

    def features(self, x: Tensor) -> Tensor:
        return x

    def log_unnormalized(self, x: Tensor | None, y: Tensor, h: Tensor | None = None,
                         proposal_log_prob: Tensor | None = None) -> Tensor:
        return -0.5 * torch.einsum("...d,de,...e->...", y, self.precision, y)

    def proposal_distribution(self, h: Tensor) -> GaussianMixture:
        n, d = h.shape[0], self.energy.target_dim
        loc = torch.tensor([-0.5, 0.5]).view(1, 2, 1).expand(n, 2, d)
        return GaussianMixture(torch.zeros(n, 2), loc, torch.full((n, 2, d), 1.6))


COV = np.array([[1.0, 0.8], [0.8, 1.0]]) * 0.5


def test_an_ebms_moments_marginals_and_scores_against_closed_forms() -> None:
    model, x = GaussianEnergy(COV), torch.zeros(3, 1)
    d = SNISPredictive(model, x, 2**15, seed=0)
    np.testing.assert_allclose(d.mean(), 0, atol=0.05)
    np.testing.assert_allclose(d.cov(), np.broadcast_to(COV, (3, 2, 2)), atol=0.05)
    y = np.array([[0.3, -0.2], [1.0, 0.9], [-0.5, 0.1]])
    np.testing.assert_allclose(d.logpdf(y), stats.multivariate_normal(cov=COV).logpdf(y), atol=0.03)
    marginal = d.marginal(1)
    assert marginal.event_shape == () and "target=1" in repr(marginal)
    grid = np.linspace(-2, 2, 5)
    want = stats.norm(0, np.sqrt(COV[1, 1])).logpdf(grid)
    np.testing.assert_allclose(marginal.logpdf(grid[:, None]), np.broadcast_to(want[:, None], (5, 3)), atol=0.05)
    np.testing.assert_allclose(marginal.ppf(0.9), stats.norm(0, np.sqrt(COV[1, 1])).ppf(0.9), atol=0.05)
    # the marginal's density integrates to one (quadrature over a fine grid)
    fine = np.linspace(-4, 4, 201)
    assert integrate.trapezoid(marginal[0].pdf(fine), fine) == pytest.approx(1, abs=0.02)
    # the weighted energy score is scoringrules' with the self-normalised weights
    d = SNISPredictive(model, x, 2048, seed=0)
    d.mean()
    ws = d._cached
    weights = ws.weights().T.double().numpy()  # (n, M)
    fct = ws.samples.transpose(0, 1).double().numpy()  # (n, M, D)
    np.testing.assert_allclose(d.energy_score(y), scoringrules.energy_score(y, fct, ens_w=weights, backend="numpy"),
                               rtol=1e-6)
    # and in one dimension it is the CRPS: the pairwise form agrees with crps()
    marginal = d.marginal(1)
    np.testing.assert_allclose(SNISPredictive._energy_score(marginal, torch.as_tensor(y[:, 1:])), marginal.crps(y[:, 1]),
                               rtol=1e-5)
    assert np.array_equal(marginal.energy_score(y[:, 1]), marginal.crps(y[:, 1]))


def test_a_streamed_summary_is_one_pass_with_the_single_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = GaussianEnergy(COV[:1, :1]), torch.linspace(0, 1, 7).view(-1, 1)
    kept = SNISPredictive(model, x, 256, seed=3, squeeze=True)
    single = {"mean": kept.mean(), "std": kept.std(), "interval": kept.interval(0.8),
              "quantiles": kept.ppf([[0.1], [0.5]]), "samples": kept.sample(5, random_state=2)}
    monkeypatch.setattr(predictive, "CACHE_CANDIDATES", 0)
    streamed = SNISPredictive(model, x, 256, seed=3, squeeze=True, max_candidates=3 * 256)
    passes = []
    original = streamed._stream
    monkeypatch.setattr(streamed, "_stream", lambda fn: passes.append(1) or original(fn))
    together = streamed.summary(0.8, [0.1, 0.5], 5, random_state=2)
    assert len(passes) == 1 and together.keys() == single.keys()
    for key, want in single.items():
        np.testing.assert_allclose(together[key], want, rtol=1e-6, atol=1e-6, err_msg=key)
    # rows picked from a kept distribution are those rows' own answers
    np.testing.assert_allclose(kept[2:5].interval(0.8), np.stack(single["interval"])[:, 2:5], atol=1e-6)
    assert kept[4].ess() == pytest.approx(kept.ess()[4])


def test_a_log_transformed_gaussian_is_scipys_lognormal() -> None:
    from ebreg.predictive import TransformedPredictive
    from ebreg.transforms import TargetTransform

    mu, sigma, y = np.array([0.5, 2.0, -1.0]), np.array([0.3, 0.8, 0.5]), np.array([1.2, 9.0, 0.4])
    d, ref = TransformedPredictive(_normal(mu, sigma), TargetTransform("log")), stats.lognorm(s=sigma, scale=np.exp(mu))
    np.testing.assert_allclose(d.mean(), ref.mean(), rtol=1e-9)
    np.testing.assert_allclose(d.std(), ref.std(), rtol=1e-7)
    np.testing.assert_allclose(d.ppf(0.1), ref.ppf(0.1), rtol=1e-6)
    np.testing.assert_allclose(d.cdf(y), ref.cdf(y), atol=1e-9)
    np.testing.assert_allclose(d.logpdf(y), ref.logpdf(y), atol=1e-9)
    np.testing.assert_allclose(d.crps(y), scoringrules.crps_lognormal(y, mu, sigma, backend="numpy"), rtol=2e-3)
    assert np.all(d.logpdf(-y) == -np.inf) and np.all(d.cdf(-y) == 0) and (d.sample(100, random_state=0) > 0).all()
    assert isinstance(d[1:], TransformedPredictive) and d[1].mean() == pytest.approx(ref.mean()[1])


def test_a_logit_transformed_density_lives_on_its_bounds_and_integrates_to_one() -> None:
    from ebreg.predictive import TransformedPredictive
    from ebreg.transforms import TargetTransform

    d = TransformedPredictive(_mixture(3, k=2), TargetTransform("logit", 10.0, 20.0))
    grid = np.linspace(10, 20, 20001)[1:-1]
    assert integrate.trapezoid(d.pdf(grid[:, None]), grid, axis=0) == pytest.approx(np.ones(3), abs=1e-3)
    draws = d.sample(1000, random_state=0)
    assert ((draws > 10) & (draws < 20)).all() and np.all(d.logpdf(np.array([9.0, 20.0, 25.0])) == -np.inf)
    low, high = d.interval(0.9)
    assert ((10 < low) & (low < high) & (high < 20)).all()
    np.testing.assert_allclose(d.cdf(high) - d.cdf(low), 0.9, atol=1e-6)
    # mean by quadrature over the density
    np.testing.assert_allclose(d.mean(), integrate.trapezoid(grid[:, None] * d.pdf(grid[:, None]), grid, axis=0),
                               rtol=1e-4)
