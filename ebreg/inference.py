"""Test-time inference with a learned proposal: self-normalised importance sampling (SNIS).

For x, draw ``y_m ~ q(y|x)`` and weigh them by ``log w_m = f(x, y_m) - log q(y_m|x)``.
:class:`WeightedSamples` holds the result and derives every prediction from it. The
functions below process x in chunks so that memory stays bounded for any number of rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._fast.allocator import keep_freed_memory_if_enabled
from ._shapes import as_targets
from .ebm import ConditionalEBM

__all__ = [
    "WeightedSamples",
    "importance_sample",
    "map_chunks",
    "predict_mean",
    "log_density",
    "marginal_log_density",
    "log_likelihood",
    "sample",
    "refine",
    "ACCELERATOR_MAX_CANDIDATES",
    "DEFAULT_MAX_CANDIDATES",
    "max_candidates_for",
    "Models",
    "members",
    "effective_sample_fraction",
]

#: one EBM, or a list or tuple of the members of an equal-weight ensemble ``p(y|x) = 1/E sum_e p_e(y|x)``
Models = ConditionalEBM | Sequence[ConditionalEBM]

#: Candidates (rows x samples) evaluated at once by the chunked functions on the CPU: small
#: enough that a chunk's tensors are reused from the allocator's heap instead of being mapped
#: afresh, and that memory stays bounded however many rows are predicted
DEFAULT_MAX_CANDIDATES = 2**18
#: The same on an accelerator: a chunk's kernels are launched one by one from the host, so
#: chunks must be large for the device's work, not the launches, to set the time
ACCELERATOR_MAX_CANDIDATES = 2**21


def max_candidates_for(device: torch.device) -> int:
    """The chunked functions' default number of candidates at once for tensors on ``device``."""
    return DEFAULT_MAX_CANDIDATES if device.type == "cpu" else ACCELERATOR_MAX_CANDIDATES


def effective_sample_fraction(log_w: Tensor) -> Tensor:
    """ESS / M of self-normalised weights from unnormalised log-weights ``(M, n)`` -> ``(n,)``:
    ``(sum_m w_m)^2 / (M sum_m w_m^2)``, in seven passes over the weights."""
    w = (log_w - log_w.amax(0)).exp_()
    total = w.sum(0)
    return total.square_().div_(w.square_().sum(0)).div_(log_w.shape[0])


@dataclass(frozen=True)
class WeightedSamples:
    """Samples ``(E * M, n, D)`` with unnormalised log-weights ``(E * M, n)``.

    With ``log_weights = f - log q`` (as :func:`importance_sample` makes them),
    :meth:`log_normalizer` estimates ``log Z(x)``. An ensemble's samples stack its E
    members' blocks of M (``members = E``): each block is weighed within itself and counts
    1/E, which is SNIS for the mixture ``1/E sum_e p_e``.
    """

    samples: Tensor
    log_weights: Tensor
    members: int = 1

    @property
    def num_samples(self) -> int:
        """Samples per member, M."""
        return self.samples.shape[0] // self.members

    def _blocks(self) -> Tensor:
        """``(E, M, n)`` view of the log-weights."""
        return self.log_weights.view(self.members, self.num_samples, -1)

    def weights(self) -> Tensor:
        """Self-normalised weights ``(E * M, n)``, summing to one over all samples."""
        if self.log_weights.stride(0) == 1:  # each row's weights contiguous: a softmax along memory,
            # several times faster than across it (SNISPredictive keeps its samples so)
            per_row = self.log_weights.T.reshape(-1, self.members, self.num_samples)  # (n, E, M)
            w = torch.softmax(per_row, 2).view(per_row.shape[0], -1).T
        else:
            w = torch.softmax(self._blocks(), 1).view_as(self.log_weights)
        return w if self.members == 1 else w / self.members

    def mean(self) -> Tensor:
        """SNIS mean ``(n, D)``."""
        return (self.weights().unsqueeze(-1) * self.samples).sum(0)

    def variance(self) -> Tensor:
        """SNIS variance ``(n, D)`` (per dimension)."""
        return self.moments()[1]

    def moments(self) -> tuple[Tensor, Tensor]:
        """SNIS mean and variance, each ``(n, D)``, from one normalisation of the weights."""
        w = self.weights().unsqueeze(-1)
        mean = (w * self.samples).sum(0)
        return mean, (w * (self.samples - mean) ** 2).sum(0)

    def stddev(self) -> Tensor:
        """SNIS standard deviation ``(n, D)``."""
        return self.variance().sqrt()

    def ess(self) -> Tensor:
        """Effective sample size ``1 / sum_m w_m^2`` ``(n,)``, between 1 and E * M."""
        if self.members == 1:
            return effective_sample_fraction(self.log_weights) * self.num_samples
        return self.weights().square().sum(0).reciprocal()

    def log_normalizer(self, extra_log_weight: Tensor | None = None) -> Tensor:
        """``log Z(x) ≈ logsumexp_m log w_m - log M`` ``(n,)`` (biased low for finite M); for an
        ensemble one per member, ``(E, n)``.

        ``extra_log_weight`` ``(n,)`` or ``(E, n)``: count one more point with
        this log-weight, as an (M + 1)-th sample (see :func:`log_density`).
        """
        log_w = self._blocks()
        if extra_log_weight is not None:
            log_w = torch.cat([log_w, extra_log_weight.view(self.members, 1, -1)], 1)
        out = torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])
        return out.squeeze(0) if self.members == 1 else out

    def _sorted_1d(self) -> tuple[Tensor, Tensor]:
        """Each row's samples in increasing order and their weights in that order, both
        ``(n, E * M)`` (D = 1)."""
        if self.samples.shape[-1] != 1:
            raise ValueError("quantiles, intervals and cdf need one-dimensional targets (D = 1)")
        values, w = self.samples.squeeze(-1).T, self.weights().T  # (n, E * M)
        if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
            # numpy's vectorised sort (x86-simd-sort, Highway) ranks a CPU's rows about 2.5 times
            # faster than torch's
            order = torch.from_numpy(np.argsort(values.detach().numpy(), axis=1))
        else:
            order = values.argsort(1)
        return values.gather(1, order), w.gather(1, order)

    def cdf(self, y: Tensor) -> Tensor:
        """Weighted empirical CDF at ``y`` ``(n,)`` or ``(n, 1)`` -> ``(n,)`` (D = 1)."""
        y = as_targets(y)
        if self.samples.shape[-1] != 1:
            raise ValueError("cdf needs one-dimensional targets (D = 1)")
        return (self.weights() * (self.samples <= y.unsqueeze(0)).squeeze(-1)).sum(0)

    def quantile(self, q: float | Sequence[float] | Tensor) -> Tensor:
        """Quantiles of the weighted empirical distribution (D = 1).

        ``q`` a float -> ``(n,)``; ``q`` of shape ``(L,)``, or ``(L, n)`` for levels per row, ->
        ``(L, n)``. The quantile is the smallest sample whose cumulative weight reaches ``q``.
        """
        values, w = self._sorted_1d()  # (n, E * M)
        levels = torch.as_tensor(q, dtype=values.dtype, device=values.device)
        if ((levels < 0) | (levels > 1)).any():
            raise ValueError(f"quantile levels must lie in [0, 1], got {q}")
        cum = w.cumsum(1)
        if levels.dim() == 2:  # (L, n): each row its own levels
            lv = levels.T.contiguous()
        else:
            lv = levels.reshape(1, -1).expand(cum.shape[0], -1).contiguous()  # (n, L)
        idx = torch.searchsorted(cum, lv).clamp_(max=values.shape[1] - 1)  # (n, L)
        out = values.gather(1, idx).T  # (L, n)
        return out.squeeze(0) if levels.dim() == 0 else out

    def interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        """Central interval holding ``level`` of the mass: ``(low, high)``, each ``(n,)``."""
        if not 0 < level < 1:
            raise ValueError(f"interval level must lie in (0, 1), got {level}")
        low, high = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return low, high

    def resample(self, k: int, generator: torch.Generator | None = None, uniforms: Tensor | None = None) -> Tensor:
        """Sampling-importance-resampling: ``k`` draws ``(k, n, D)`` with probabilities w.

        ``uniforms`` ``(n, k)`` in [0, 1): pick by inverting each row's cumulative weights at these
        instead of drawing (rows then get their own draws however they are chunked).
        """
        w = self.weights().T  # (n, E * M)
        if uniforms is None:
            idx = torch.multinomial(w, k, replacement=True, generator=generator).T
        else:
            cum = w.cumsum(1)
            idx = torch.searchsorted(cum, (uniforms * cum[:, -1:]).contiguous(), right=True)
            idx = idx.clamp_(max=w.shape[1] - 1).T
        d = self.samples.shape[-1]
        return self.samples.gather(0, idx.unsqueeze(-1).expand(k, idx.shape[1], d))


def members(model: Models) -> list[ConditionalEBM]:
    """The EBMs of ``model``: itself, or an ensemble's members."""
    return list(model) if isinstance(model, (list, tuple)) else [model]


@torch.no_grad()
def importance_sample(
    model: Models,
    x: Tensor,
    num_samples: int = 1024,
    generator: torch.Generator | None = None,
    common_noise: bool = False,
) -> WeightedSamples:
    """Draw M samples per row of ``x`` ``(n, ...)`` from the learned proposal and weigh them;
    for an ensemble, M from each member's proposal, weighed by that member.

    ``common_noise``: see :meth:`ebreg.proposals.GaussianMixture.sample`.
    """
    samples, log_weights = [], []
    for ebm in members(model):
        h = ebm.features(x)
        q = ebm.proposal_distribution(h)
        ys = q.sample((num_samples,), generator=generator, common_noise=common_noise)  # (M, n, D)
        samples.append(ys)
        log_q = q.log_prob(ys)
        log_weights.append(ebm.log_unnormalized(None, ys, h=h, proposal_log_prob=log_q) - log_q)
    if len(samples) == 1:
        return WeightedSamples(samples[0], log_weights[0])
    return WeightedSamples(torch.cat(samples), torch.cat(log_weights), len(samples))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def map_chunks(
    fn: Callable[[WeightedSamples, slice], Tensor],
    model: Models,
    x: Tensor,
    num_samples: int = 1024,
    generator: torch.Generator | None = None,
    max_candidates: int | None = None,
    common_noise: bool = False,
) -> Tensor:
    """Apply ``fn(weighted_samples, rows)`` chunk by chunk; join the results on dim 0.

    ``fn`` gets the weighted samples of ``x[rows]`` and returns a tensor whose dim 0 indexes
    those rows. Chunks hold ``max_candidates // (num_samples * E)`` rows (E: the number of
    models, 1 for one EBM), so memory is bounded whatever the number of rows is; by default
    ``max_candidates`` is :func:`max_candidates_for` the device of ``x``. With ``common_noise`` every chunk starts from the same
    generator state, so each row gets the same draws whatever the chunking (see
    :meth:`ebreg.proposals.GaussianMixture.sample`); ``generator`` is then required.
    """
    if x.shape[0] == 0:
        raise ValueError("x has no rows")
    if common_noise and generator is None:
        raise ValueError("common_noise needs a seeded generator")
    keep_freed_memory_if_enabled()
    start = generator.get_state() if common_noise else None
    if max_candidates is None:
        max_candidates = max_candidates_for(x.device)
    size = max(1, max_candidates // (num_samples * len(members(model))))  # rows per chunk
    out: Tensor | None = None
    for rows in _chunks(x.shape[0], size):
        if start is not None:
            generator.set_state(start)
        part = fn(importance_sample(model, x[rows], num_samples, generator, common_noise), rows)
        if out is None:  # one result tensor, filled in place: many small kept tensors would
            # fragment the heap between the chunks' large temporaries and grow memory
            out = part.new_empty((x.shape[0], *part.shape[1:]))
        out[rows] = part
    return out


def predict_mean(
    model: Models,
    x: Tensor,
    num_samples: int = 1024,
    generator: torch.Generator | None = None,
    max_candidates: int | None = None,
    common_noise: bool = False,
) -> Tensor:
    """SNIS mean ``(n, D)`` of the EBM for each row of ``x`` (``common_noise``: see
    :func:`map_chunks`)."""
    return map_chunks(lambda ws, _: ws.mean(), model, x, num_samples, generator, max_candidates, common_noise)


@torch.no_grad()
def log_density(model: Models, x: Tensor, y: Tensor, ws: WeightedSamples) -> Tensor:
    """``log p(y|x) ≈ f(x, y) - log Z(x)`` ``(n,)`` from the weighted samples ``ws`` of ``x``
    (for an ensemble, ``log 1/E sum_e p_e(y|x)`` with each member's own ``log Z_e``).

    ``log Z`` counts the evaluated ``y`` among the samples, with its own importance weight
    ``w_y = exp(f(x, y)) / q(y|x)``: ``Z ≈ (sum_m w_m + w_y) / (M + 1)``. Like plain SNIS
    this is consistent (the extra term vanishes as M grows; at M = 1024 the two differ by
    about ``(1 - p(y)/q(y)) / M``), but it is bounded: ``log p <= log q(y|x) + log(M + 1)``,
    so a spike of f narrower than the proposal, which the samples miss, cannot make the
    likelihood arbitrarily large (a repeated target value invites such spikes,
    ``docs/diagnostics.md``). ``y``: ``(n, D)``.
    """
    f, log_q = [], []
    for ebm in members(model):
        h = ebm.features(x)
        log_q.append(ebm.proposal_distribution(h).log_prob(y))
        f.append(ebm.log_unnormalized(None, y, h=h, proposal_log_prob=log_q[-1]))
    f_all, log_q_all = torch.stack(f), torch.stack(log_q)  # (E, n)
    log_z = ws.log_normalizer(f_all - log_q_all).view_as(f_all)
    return torch.logsumexp(f_all - log_z, 0) - math.log(len(f_all))


@torch.no_grad()
def marginal_log_density(model: Models, x: Tensor, y: Tensor, target: int, ws: WeightedSamples,
                         generator: torch.Generator | None = None) -> Tensor:
    """``log p(y_j|x)`` ``(n,)`` of target ``j = target`` alone, ``y`` ``(n,)`` or ``(n, 1)``, from
    the weighted samples ``ws`` of ``x`` (their ``log Z``) and M more draws per row.

    With the proposal ``q = q_j(y_j) q(y_rest|y_j)`` (for a diagonal Gaussian mixture the
    conditional is the mixture reweighed by each component's density at ``y_j``),
    ``p(y_j) = ∫ exp f(y_j, y_rest) dy_rest / Z = q_j(y_j) E_{q(y_rest|y_j)}[w] / Z`` with the
    importance weight ``w = exp f / q`` of the joint point: both expectations are estimated by
    sample means, each member with its own proposal and ``Z`` (an ensemble averages densities).
    """
    y = as_targets(y)[:, 0]
    num = ws.num_samples
    log_p = []
    for ebm, log_z in zip(members(model), ws.log_normalizer().view(ws.members, -1)):
        h = ebm.features(x)
        q = ebm.proposal_distribution(h)
        logits, loc, scale = q.mixture_distribution.logits, q.loc, q.scale  # (n, K), (n, K, D)
        joint = logits + torch.distributions.Normal(loc[..., target], scale[..., target]).log_prob(y[:, None])
        log_qj = torch.logsumexp(joint, -1)  # (n,)
        component = torch.multinomial(torch.softmax(joint, -1), num, replacement=True, generator=generator)  # (n, M)
        pick = component.unsqueeze(-1).expand(-1, -1, loc.shape[-1])
        noise = torch.randn(pick.shape, generator=generator, device=x.device, dtype=loc.dtype)
        ys = (loc.gather(1, pick) + scale.gather(1, pick) * noise).transpose(0, 1).clone()  # (M, n, D)
        ys[..., target] = y
        log_q = q.log_prob(ys)
        log_w = ebm.log_unnormalized(None, ys, h=h, proposal_log_prob=log_q) - log_q  # (M, n)
        log_p.append(log_qj + torch.logsumexp(log_w, 0) - math.log(num) - log_z)
    return torch.logsumexp(torch.stack(log_p), 0) - math.log(len(log_p))


def log_likelihood(
    model: Models,
    x: Tensor,
    y: Tensor,
    num_samples: int = 1024,
    generator: torch.Generator | None = None,
    max_candidates: int | None = None,
    common_noise: bool = False,
) -> Tensor:
    """``log p(y|x)`` ``(n,)`` by :func:`log_density` with M proposal samples (report M with it).

    ``y``: ``(n,)`` or ``(n, D)``.
    """
    y = as_targets(y)
    return map_chunks(lambda ws, rows: log_density(model, x[rows], y[rows], ws), model, x, num_samples,
                      generator, max_candidates, common_noise)


def sample(
    model: Models,
    x: Tensor,
    k: int,
    num_samples: int = 1024,
    generator: torch.Generator | None = None,
    max_candidates: int | None = None,
    common_noise: bool = False,
) -> Tensor:
    """``k`` approximate samples ``(k, n, D)`` from the EBM by sampling-importance-resampling."""
    out = map_chunks(lambda ws, _: ws.resample(k, generator).transpose(0, 1),
                     model, x, num_samples, generator, max_candidates, common_noise)
    return out.transpose(0, 1)


def refine(
    model: ConditionalEBM,
    x: Tensor,
    y_init: Tensor,
    steps: int = 10,
    step_size: float = 1e-3,
) -> Tensor:
    """Gradient ascent on ``f(x, y)`` from ``y_init`` ``(n, D)``; returns refined ``(n, D)``.

    Each step proposes ``y' = y + lambda * grad_y f(x, y)`` per row; a row keeps ``y'`` if its
    score did not drop and otherwise keeps ``y`` and halves its own ``lambda``.
    """
    y = as_targets(y_init).detach().clone()
    with torch.no_grad():
        h = model.features(x)
    lam = torch.full((y.shape[0], 1), float(step_size), dtype=y.dtype, device=y.device)
    for _ in range(steps):
        y.requires_grad_(True)
        with torch.enable_grad():
            score = model.log_unnormalized(None, y, h=h)
            (grad,) = torch.autograd.grad(score.sum(), y)
        with torch.no_grad():
            y = y.detach()
            candidate = y + lam * grad
            accept = (model.log_unnormalized(None, candidate, h=h) >= score.detach()).unsqueeze(-1)
            y = torch.where(accept, candidate, y)
            lam = torch.where(accept, lam, lam / 2)
    return y.detach()
