"""SNIS inference against closed forms and quadrature; WeightedSamples by hand."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats
from torch import Tensor, nn

from ebreg.calibration import fit_temperature, temperature_log_likelihoods
from ebreg.inference import (
    WeightedSamples,
    importance_sample,
    log_density,
    log_likelihood,
    predict_mean,
    refine,
    sample,
)
from ebreg.proposals import GaussianMixture


class KnownEBM(nn.Module):
    """A stand-in EBM with ``f(x, y) = log N(y; x, s^2) + c`` (or a quartic well) and a
    deliberately mismatched Gaussian proposal ``N(x + shift, width^2)``."""

    def __init__(self, s: float = 0.7, shift: float = 0.4, width: float = 1.5, quartic: bool = False,
                 c: float = 3.0) -> None:
        super().__init__()
        self.s, self.shift, self.width, self.quartic, self.c = s, shift, width, quartic, c

    def features(self, x: Tensor) -> Tensor:
        return x

    def log_unnormalized(self, x: Tensor | None, y: Tensor, h: Tensor | None = None,
                         proposal_log_prob: Tensor | None = None) -> Tensor:
        h = x if h is None else h
        if self.quartic:  # f = -y^4 / 4 + x y
            return (-(y**4) / 4 + h * y).squeeze(-1)
        return (torch.distributions.Normal(h, self.s).log_prob(y) + self.c).squeeze(-1)

    def proposal_distribution(self, h: Tensor) -> GaussianMixture:
        n = h.shape[0]
        return GaussianMixture(torch.zeros(n, 1, dtype=h.dtype), (h + self.shift).view(n, 1, 1),
                               torch.full((n, 1, 1), self.width, dtype=h.dtype))


def test_snis_mean_and_std_within_four_standard_errors(gen: torch.Generator) -> None:
    model = KnownEBM()
    x = torch.full((400, 1), 0.3, dtype=torch.float64)  # 400 independent SNIS estimates
    ws = importance_sample(model, x, num_samples=512, generator=gen)
    mean, std = ws.mean().squeeze(-1), ws.stddev().squeeze(-1)
    se = lambda v: v.std() / math.sqrt(v.numel())  # noqa: E731
    assert abs(mean.mean().item() - 0.3) < 4 * se(mean)
    assert abs(std.mean().item() - 0.7) < 4 * se(std) + 0.7 / 512  # + the O(1/M) SNIS bias bound
    assert ws.ess().min() > 100  # a mismatched but covering proposal keeps a healthy ESS


def test_log_normalizer_against_quadrature(gen: torch.Generator) -> None:
    model = KnownEBM(quartic=True, shift=0.0, width=1.2)
    xs = [-1.0, 0.0, 0.8]
    x = torch.tensor(xs, dtype=torch.float64).view(-1, 1)
    est = importance_sample(model, x, num_samples=200_000, generator=gen).log_normalizer()
    for xi, e in zip(xs, est):
        z, _ = integrate.quad(lambda y, xi=xi: math.exp(-(y**4) / 4 + xi * y), -20, 20)
        assert e.item() == pytest.approx(math.log(z), abs=0.01)


def test_log_likelihood_of_a_gaussian_ebm(gen: torch.Generator) -> None:
    model = KnownEBM()
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).view(-1, 1)
    y = x.squeeze(-1) + 0.2
    ll = log_likelihood(model, x, y, num_samples=50_000, generator=gen, max_candidates=100_000)
    assert torch.allclose(ll, torch.as_tensor(stats.norm.logpdf(0.2, 0, 0.7)), atol=0.01)


class SpikedEBM(KnownEBM):
    """KnownEBM plus a spike of height ``spike`` nats on ``|y| < 1e-6``, far narrower than
    the proposal: no sample lands in it."""

    def __init__(self, spike: float) -> None:
        super().__init__()
        self.spike = spike

    def log_unnormalized(self, x: Tensor | None, y: Tensor, h: Tensor | None = None,
                         proposal_log_prob: Tensor | None = None) -> Tensor:
        return super().log_unnormalized(x, y, h) + self.spike * (y.abs() < 1e-6).squeeze(-1)


def test_log_density_is_bounded_at_a_spike_the_samples_miss(gen: torch.Generator) -> None:
    m = 1000
    x, y = torch.zeros(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)
    model = SpikedEBM(spike=500.0)
    ws = importance_sample(model, x, num_samples=m, generator=gen)
    plain = model.log_unnormalized(x, y) - ws.log_normalizer()
    bounded = log_density(model, x, y, ws)
    log_q = model.proposal_distribution(x).log_prob(y)
    assert (plain > 400).all()  # plain SNIS believes the spike
    assert (bounded <= log_q + math.log(m + 1) + 1e-9).all()
    assert torch.allclose(bounded, log_q + math.log(m + 1), atol=1e-6)  # the spike's weight dominates
    # without the spike the two estimates agree to O(1/M)
    clean = KnownEBM()
    ws = importance_sample(clean, x, num_samples=m, generator=gen)
    assert torch.allclose(log_density(clean, x, y, ws), clean.log_unnormalized(x, y) - ws.log_normalizer(),
                          atol=5 / m)


def test_chunked_prediction_equals_one_chunk_statistically(gen: torch.Generator) -> None:
    model = KnownEBM()
    x = torch.linspace(-2, 2, 50, dtype=torch.float64).view(-1, 1)
    small = predict_mean(model, x, num_samples=2000, generator=gen, max_candidates=4000)  # 25 chunks
    assert small.shape == (50, 1)
    assert (small - x).abs().max() < 0.1


def test_weighted_samples_statistics_by_hand() -> None:
    ys = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(4, 1, 1)
    ws = WeightedSamples(ys, torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).view(4, 1))
    assert ws.mean().item() == pytest.approx(2.0)
    assert ws.variance().item() == pytest.approx(0.1 * 4 + 0.2 * 1 + 0 + 0.4 * 1)
    assert ws.ess().item() == pytest.approx(1 / (0.01 + 0.04 + 0.09 + 0.16))
    assert ws.cdf(torch.tensor([1.5])).item() == pytest.approx(0.3)
    assert ws.quantile([0.1, 0.25, 0.29, 0.31, 1.0])[:, 0].tolist() == [0.0, 1.0, 1.0, 2.0, 3.0]
    low, high = ws.interval(0.5)
    assert (low.item(), high.item()) == (1.0, 3.0)
    # log Z = log mean of the weights as given
    assert ws.log_normalizer().item() == pytest.approx(math.log(1.0 / 4))
    # one more point with weight 0.5 counts as a fifth sample
    assert ws.log_normalizer(torch.tensor([math.log(0.5)])).item() == pytest.approx(math.log(1.5 / 5))
    with pytest.raises(ValueError, match="lie in"):
        ws.interval(1.5)


def test_ensemble_weighted_samples_by_hand() -> None:
    ys = torch.arange(4.0).view(4, 1, 1)  # member 1: 0, 1; member 2: 2, 3
    ws = WeightedSamples(ys, torch.log(torch.tensor([0.5, 0.5, 1.0, 3.0])).view(4, 1), members=2)
    assert ws.num_samples == 2
    assert ws.weights()[:, 0].tolist() == pytest.approx([0.25, 0.25, 0.125, 0.375])
    assert ws.mean().item() == pytest.approx(0.25 + 2 * 0.125 + 3 * 0.375)
    assert ws.log_normalizer()[:, 0].tolist() == pytest.approx([math.log(0.5), math.log(2.0)])
    extra = torch.zeros(2, 1)  # one more point of weight 1 in each member
    assert ws.log_normalizer(extra)[:, 0].tolist() == pytest.approx([math.log(2 / 3), math.log(5 / 3)])


def test_ensemble_snis_is_the_equal_mixture_of_its_members(gen: torch.Generator) -> None:
    # members with different scales and very different constants c: each is normalised by its
    # own log Z, so the constants must not matter
    models = [KnownEBM(s=0.7, c=3.0), KnownEBM(s=0.3, shift=-0.2, width=1.0, c=-5.0)]
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).view(-1, 1)
    ws = importance_sample(models, x, num_samples=20_000, generator=gen)
    assert ws.members == 2 and ws.samples.shape == (40_000, 20, 1)
    assert torch.allclose(ws.weights()[:20_000].sum(0), torch.full((20,), 0.5, dtype=torch.float64))
    assert (ws.mean() - x).abs().max() < 0.02
    assert (ws.stddev() - math.sqrt(0.5 * 0.7**2 + 0.5 * 0.3**2)).abs().max() < 0.01
    y = x + 0.25
    expected = torch.logsumexp(torch.stack([torch.distributions.Normal(x, s).log_prob(y) for s in (0.7, 0.3)]), 0)
    assert (log_density(models, x, y, ws) - (expected.squeeze(-1) - math.log(2))).abs().max() < 0.03
    assert (ws.cdf(x) - 0.5).abs().max() < 0.02


def _plain_quantiles(samples: Tensor, log_weights: Tensor, members: int, levels: Tensor) -> Tensor:
    """Weighted quantiles ``(L, n)`` from a stable torch sort down each column, as by hand."""
    m, n = log_weights.shape
    w = (torch.softmax(log_weights.reshape(members, m // members, n), 1) / members).reshape(m, n)
    values, order = samples.squeeze(-1).sort(dim=0, stable=True)
    cum = w.gather(0, order).cumsum(0)
    idx = torch.stack([(cum < level).sum(0).clamp(max=m - 1) for level in levels])  # first reaching each level
    return values.gather(0, idx)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("members", [1, 3])
def test_quantiles_equal_a_plain_sort_in_every_memory_layout(dtype: torch.dtype, members: int) -> None:
    # float32 and float64 rank rows with numpy's sort, float16 with torch's; the samples and
    # log-weights row-major (M, n), per row contiguous (as drawn and as SNISPredictive keeps
    # them) and interleaved per row (samples then log-weights)
    g = torch.Generator().manual_seed(3)
    m, n = 96 * members, 7
    samples = torch.randn(m, n, 1, generator=g).to(dtype)
    log_weights = (2 * torch.randn(m, n, generator=g)).to(dtype)
    levels = torch.tensor([0.0, 0.05, 0.31, 0.5, 0.95, 1.0])
    expected = _plain_quantiles(samples, log_weights, members, levels.to(dtype))
    packed = torch.cat([samples.permute(1, 2, 0), log_weights.T.unsqueeze(1)], 1)  # (n, 2, M)
    layouts = {"row-major": (samples, log_weights),
               "per row": (samples.permute(1, 2, 0).contiguous().permute(2, 0, 1), log_weights.T.contiguous().T),
               "interleaved": (packed[:, :1].permute(2, 0, 1), packed[:, 1].T)}
    for name, (s, lw) in layouts.items():
        ws = WeightedSamples(s, lw, members)
        assert torch.equal(ws.quantile(levels), expected), name
        low, high = ws.interval(0.9)
        assert torch.equal(torch.stack([low, high]), expected[[1, 4]]), name


@pytest.mark.parametrize("members", [1, 2])
def test_weights_are_the_same_softmax_in_either_memory_layout(members: int) -> None:
    g = torch.Generator().manual_seed(4)
    log_weights = 5 * torch.randn(64 * members, 9, generator=g)
    samples = torch.randn(64 * members, 9, 1, generator=g)
    row_major = WeightedSamples(samples, log_weights, members).weights()
    per_row = WeightedSamples(samples, log_weights.T.contiguous().T, members).weights()
    assert per_row.shape == row_major.shape == log_weights.shape
    torch.testing.assert_close(per_row, row_major, rtol=1e-6, atol=0)
    blocks = per_row.reshape(members, 64, 9).sum(1)
    torch.testing.assert_close(blocks, torch.full((members, 9), 1 / members))


def test_quantiles_of_a_known_distribution(gen: torch.Generator) -> None:
    model = KnownEBM()
    ws = importance_sample(model, torch.zeros(3, 1, dtype=torch.float64), num_samples=100_000, generator=gen)
    q = ws.quantile([0.05, 0.5, 0.95])
    assert torch.allclose(q[:, 0], torch.tensor(stats.norm.ppf([0.05, 0.5, 0.95], 0, 0.7)), atol=0.02)


def test_ess_extremes_and_resampling_frequencies(gen: torch.Generator) -> None:
    ys = torch.arange(4.0).view(4, 1, 1)
    assert WeightedSamples(ys, torch.zeros(4, 1)).ess().item() == pytest.approx(4.0)
    assert WeightedSamples(ys, torch.tensor([[0.0], [-1e4], [-1e4], [-1e4]])).ess().item() == pytest.approx(1.0)
    ws = WeightedSamples(ys, torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).view(4, 1))
    draws = ws.resample(100_000, generator=gen)
    freq = torch.bincount(draws.view(-1).long(), minlength=4) / 100_000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.01)


def test_sir_samples_follow_the_ebm(gen: torch.Generator) -> None:
    draws = sample(KnownEBM(), torch.zeros(2, 1, dtype=torch.float64), k=20_000, num_samples=20_000,
                   generator=gen)
    assert draws.shape == (20_000, 2, 1)
    assert stats.kstest(draws[:, 0, 0].numpy(), stats.norm(0, 0.7).cdf).statistic < 0.02


def test_refine_climbs_to_the_mode_and_never_descends() -> None:
    model = KnownEBM()
    x = torch.tensor([[0.5], [-1.0]], dtype=torch.float64)
    y0 = torch.tensor([[2.0], [-3.0]], dtype=torch.float64)
    start = model.log_unnormalized(x, y0)
    y = refine(model, x, y0, steps=50, step_size=0.2)
    assert (model.log_unnormalized(x, y) >= start).all()
    assert torch.allclose(y, x, atol=1e-3)


def test_fitted_temperature_matches_the_closed_form(gen: torch.Generator) -> None:
    # f = log N(y; x, s^2) + c, so p_T = N(x, T s^2); rows drawn with variance 1.5 s^2 -> T* = 1.5
    model = KnownEBM(s=0.7, shift=0.2, width=1.5)
    x = torch.randn(2000, 1, dtype=torch.float64, generator=gen)
    y = x + 0.7 * math.sqrt(1.5) * torch.randn(2000, 1, dtype=torch.float64, generator=gen)
    sample_t = float(((y - x) ** 2).mean()) / 0.7**2  # the maximum-likelihood T of these rows
    assert fit_temperature(model, x, y, num_samples=512, generator=gen) == pytest.approx(sample_t, rel=0.05)


def test_temperature_one_gives_the_log_likelihood(gen: torch.Generator) -> None:
    model = KnownEBM()
    x = torch.linspace(-1, 1, 7, dtype=torch.float64).view(-1, 1)
    y = x.squeeze(-1) + 0.3
    state = gen.get_state()
    per_t = temperature_log_likelihoods(model, x, y, torch.tensor([0.8, 1.0]), 512, gen)
    gen.set_state(state)
    ll = log_likelihood(model, x, y, 512, gen, common_noise=True)
    assert per_t.shape == (7, 2)
    assert torch.allclose(per_t[:, 1], ll, atol=1e-9)
    assert not torch.allclose(per_t[:, 0], ll)


def test_default_chunks_are_larger_on_accelerators() -> None:
    from ebreg.inference import ACCELERATOR_MAX_CANDIDATES, DEFAULT_MAX_CANDIDATES, max_candidates_for

    assert max_candidates_for(torch.device("cpu")) == DEFAULT_MAX_CANDIDATES
    assert max_candidates_for(torch.device("cuda")) == ACCELERATOR_MAX_CANDIDATES > DEFAULT_MAX_CANDIDATES
