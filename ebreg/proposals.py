"""Proposals as modules that return ``torch.distributions`` objects.

* :class:`GaussianMixture`: a diagonal Gaussian mixture, batch ``(n,)``, event ``(D,)``,
  whose density is computed in log space and whose sampler draws the component first.
* :class:`FixedGaussianMixture`: ``q(y | y_i) = 1/K sum_k N(y; y_i, sigma_k^2 I)``
  (training only: it needs the target).
* :class:`MDNHead`: the learned proposal ``q(y | h; phi)``, a mixture density network
  head on features ``h``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ._fast import current as current_fast_paths
from ._fast import mixture as fast_mixture
from .nn import full_precision, mlp

__all__ = ["GaussianMixture", "component_log_terms", "pool_mixtures", "FixedGaussianMixture", "MDNHead", "soft_clamp"]


class GaussianMixture(MixtureSameFamily):
    """Mixture of K diagonal Gaussians over ``R^D`` for each of n inputs.

    Args:
        logits: ``(n, K)`` unnormalised component log-weights.
        loc: ``(n, K, D)`` component means.
        scale: ``(n, K, D)`` component standard deviations (positive).

    ``log_prob`` is one log-sum-exp over components (the same value as torch's
    ``MixtureSameFamily.log_prob`` in fewer passes over the ``(..., n, K, D)`` values; no
    argument validation, which costs host syncs). ``sample`` draws one component per sample
    and then one Gaussian draw, so its cost does not grow with K, and it takes an optional
    ``torch.Generator``.
    """

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor) -> None:
        super().__init__(
            Categorical(logits=logits, validate_args=False),
            Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False),
            validate_args=False,
        )

    def log_prob(self, value: Tensor) -> Tensor:
        """``value``: ``(..., n, D)`` -> log-densities ``(..., n)``.

        Computed with the samples on the last (contiguous) axis, ``(n, K, D, S)`` for S values
        per row: reductions over K and broadcasts of the parameters then run along S, which a
        CPU does much faster than reductions over a short trailing K axis of ``(..., n, K, D)``.
        Where ``value`` needs no gradient, :func:`ebreg._fast.mixture.log_sum_exp` gives the
        same values in fewer passes (flag ``mixture_backward``).
        """
        loc = self.loc
        n, d = loc.shape[0], loc.shape[-1]
        # log N(v; mu, s^2) = -((v - mu) c)^2 + log c - log(pi) / 2 per dimension, c = 1 / (s sqrt 2)
        c = self.scale.reciprocal() * math.sqrt(0.5)  # (n, K, D)
        # Categorical keeps its logits normalised: they are the log-weights
        const = self.mixture_distribution.logits + c.log().sum(-1) - 0.5 * d * math.log(math.pi)
        lead = value.shape[:-2]
        v = value.expand(*lead, n, d).reshape(-1, n, d).permute(1, 2, 0)  # (n, D, S)
        if current_fast_paths().mixture_backward and not value.requires_grad:
            out = fast_mixture.log_sum_exp(v, const, loc, c)
        else:
            out = torch.logsumexp(component_log_terms(v, const, loc, c)[0], 1)
        return out.T.reshape(*lead, n)

    @property
    def loc(self) -> Tensor:
        """``(n, K, D)`` component means."""
        return self.component_distribution.base_dist.loc

    @property
    def scale(self) -> Tensor:
        """``(n, K, D)`` component standard deviations."""
        return self.component_distribution.base_dist.scale

    def sample(
        self,
        sample_shape: torch.Size | Sequence[int] = (),
        generator: torch.Generator | None = None,
        common_noise: bool = False,
        prepend: Tensor | None = None,
    ) -> Tensor:
        """Draw ``(*sample_shape, n, D)`` samples (no gradient).

        With ``common_noise`` every row uses the same uniforms (stratified over the samples)
        to pick components and the same standard normals: each row's samples still follow
        its own mixture, and a row's samples no longer depend on which other rows are drawn
        with it (predictions become invariant to batching and row order).

        ``prepend``: values ``(n, D)`` put before the samples, for a one-dimensional
        ``sample_shape`` ``(M,)``: the result is then ``(1 + M, n, D)``, as ``torch.cat`` of
        the two would be, in the memory layout :meth:`log_prob` reads without a copy.
        """
        sample_shape = torch.Size(sample_shape)
        rows = torch.Size([self.loc.shape[0], self.loc.shape[-1]])  # (n, D)
        if prepend is not None and (len(sample_shape) != 1 or prepend.shape != rows):
            raise ValueError(f"prepend needs sample_shape (M,) and values of shape {tuple(rows)}, got "
                             f"{tuple(sample_shape)} and {tuple(prepend.shape)}")
        with torch.no_grad():
            return self._sample(sample_shape, generator, common_noise, prepend)

    def _sample(self, sample_shape: torch.Size, generator: torch.Generator | None, common_noise: bool,
                prepend: Tensor | None = None) -> Tensor:
        num = math.prod(sample_shape)
        probs = self.mixture_distribution.probs  # (n, K)
        n, k = probs.shape
        d = self.loc.shape[-1]
        like = {"device": probs.device, "dtype": probs.dtype}
        if common_noise:
            u = (torch.arange(num, **like) + torch.rand(1, generator=generator, **like)) / num  # stratified
            u = u.unsqueeze(0)  # (1, num): the same for every row
            eps = torch.randn(num, 1, d, generator=generator, **like)
        else:
            u = torch.rand(n, num, generator=generator, **like)
            eps = torch.randn(num, n, d, generator=generator, **like)
        # inverse CDF: the component is the number of cumulative weights below u (cheaper than
        # torch.multinomial or searchsorted for a few components); then one lookup of
        # [mean, scale] per sample. Samples are laid out (n, D, num), as log_prob wants them.
        # (n, num); counted in int32, which a CPU sums about twice as fast as int64, then widened
        comp = (u.unsqueeze(1) > probs.cumsum(-1)[:, : k - 1].unsqueeze(-1)).sum(1, dtype=torch.int32).long()
        table = torch.cat([self.loc, self.scale], -1).transpose(1, 2)  # (n, 2D, K)
        params = table.gather(2, comp.unsqueeze(1).expand(n, 2 * d, num))  # (n, 2D, num)
        first = 0 if prepend is None else 1
        out = torch.empty(n, d, first + num, **like)
        if prepend is not None:
            out[:, :, 0] = prepend
        torch.addcmul(params[:, :d], params[:, d:], eps.permute(1, 2, 0), out=out[:, :, first:])
        samples = out.permute(2, 0, 1)  # (first + num, n, D)
        return samples if prepend is not None else samples.reshape(*sample_shape, n, d)

    def cdf(self, value: Tensor) -> Tensor:
        """Mixture CDF for D = 1: ``value`` ``(..., n, 1)`` -> ``(..., n)``."""
        if self.loc.shape[-1] != 1:
            raise ValueError("cdf is defined for one-dimensional targets (D = 1) only")
        z = (value.unsqueeze(-2) - self.loc) / self.scale  # (..., n, K, 1)
        comp_cdf = torch.special.ndtr(z).squeeze(-1)  # (..., n, K)
        return (comp_cdf * self.mixture_distribution.probs).sum(-1)


def component_log_terms(v: Tensor, const: Tensor, loc: Tensor, c: Tensor,
                        inplace: bool = False) -> tuple[Tensor, Tensor]:
    """Per-component log-terms ``s = const - sum_d t_d^2`` ``(n, K, S)`` and the scaled offsets
    ``t = (v - mu) c`` ``(n, K, D, S)``, for values ``v`` ``(n, D, S)`` and parameters ``const``
    ``(n, K)``, ``loc`` and ``c`` ``(n, K, D)``. ``inplace=True`` (no autograd through ``v``)
    scales the offsets in place."""
    t = v.unsqueeze(1) - loc.unsqueeze(-1)
    t = t.mul_(c.unsqueeze(-1)) if inplace else t * c.unsqueeze(-1)
    if t.shape[2] == 1:  # one pass for const - t^2
        return torch.addcmul(const.unsqueeze(-1), t.squeeze(2), t.squeeze(2), value=-1), t
    return const.unsqueeze(-1) - t.square().sum(2), t


def pool_mixtures(mixtures: Sequence[GaussianMixture]) -> GaussianMixture:
    """The equal-weight mixture ``1/E sum_e q_e`` of E mixtures over the same n rows, as one
    mixture of ``E * K`` components."""
    if len(mixtures) == 1:
        return mixtures[0]
    logits = torch.cat([m.mixture_distribution.logits for m in mixtures], -1)  # each normalised
    return GaussianMixture(logits, torch.cat([m.loc for m in mixtures], -2), torch.cat([m.scale for m in mixtures], -2))


class FixedGaussianMixture(nn.Module):
    """``q(y | y_i) = 1/K sum_k N(y; y_i, sigma_k^2 I)``: the prior work's fixed proposal.

    Args:
        sigmas: the K standard deviations sigma_k (task hyper-parameters).
    """

    def __init__(self, sigmas: Sequence[float]) -> None:
        super().__init__()
        if len(sigmas) == 0 or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
            raise ValueError(f"sigmas must be positive and finite, got {list(sigmas)}")
        self.register_buffer("sigmas", torch.tensor([float(s) for s in sigmas], dtype=torch.float64))

    def forward(self, center: Tensor) -> GaussianMixture:
        """``center``: ``(n, D)`` targets -> mixture with batch ``(n,)``, event ``(D,)``."""
        return _centred_mixture(center, self.sigmas)

    def perturb(
        self, y: Tensor, beta: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """NCE+ label noise: ``y0 = y + nu``, ``nu ~ 1/K sum_k N(0, beta^2 sigma_k^2 I)``.

        ``y``: ``(n, D)``. Returns ``y0`` ``(n, D)`` and ``log q(y0 | y)`` ``(n,)`` under the
        *unscaled* fixed proposal (the density of the offset ``nu``), as NCE+ prescribes.
        """
        zero = torch.zeros_like(y)
        nu = _centred_mixture(zero, self.sigmas * beta).sample((), generator=generator)
        return y + nu, self(zero).log_prob(nu)


def _centred_mixture(center: Tensor, sigmas: Tensor) -> GaussianMixture:
    """Equal-weight mixture of ``N(center, sigma_k^2 I)``; ``center`` ``(n, D)``."""
    n, d = center.shape
    k = sigmas.numel()
    loc = center.unsqueeze(1).expand(n, k, d)
    scale = sigmas.to(center)[None, :, None].expand(n, k, d)
    logits = torch.zeros(n, k, dtype=center.dtype, device=center.device)
    return GaussianMixture(logits, loc, scale)


def soft_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """Smoothly squash ``x`` into ``(low, high)``; slope 1 at the centre of the interval."""
    mid, half = 0.5 * (low + high), 0.5 * (high - low)
    return mid + half * torch.tanh((x - mid) / half)


class MDNHead(nn.Module):
    """Learned proposal ``q(y | h; phi)``: K diagonal Gaussians whose parameters come from h.

    Three branches, each an MLP on ``h``, give the K*D means, the K*D log-variances and the
    K weight logits. The log standard deviation is ``soft_clamp(log_var / 2)`` into
    ``[log min_scale, log max_scale]``, so no component can collapse to zero width or blow
    up, while gradients never vanish as they would under a hard clamp.

    Args:
        in_features: width H of the features.
        target_dim: D.
        components: K.
        hidden: hidden widths of each branch.
        min_scale, max_scale: bounds of the component standard deviations.
    """

    def __init__(
        self,
        in_features: int,
        target_dim: int,
        components: int = 4,
        hidden: Sequence[int] = (10,),
        min_scale: float = 1e-3,
        max_scale: float = 1e3,
    ) -> None:
        super().__init__()
        if components < 1 or target_dim < 1:
            raise ValueError("components and target_dim must be at least 1")
        if not 0 < min_scale < max_scale:
            raise ValueError(f"need 0 < min_scale < max_scale, got {min_scale}, {max_scale}")
        self.target_dim, self.components = target_dim, components
        self.log_scale_bounds = (math.log(min_scale), math.log(max_scale))
        self.mean = mlp(in_features, hidden, components * target_dim)
        self.log_var = mlp(in_features, hidden, components * target_dim)
        self.logits = mlp(in_features, hidden, components)

    def forward(self, h: Tensor) -> GaussianMixture:
        """``h``: ``(n, H)`` -> mixture with batch ``(n,)``, event ``(D,)``."""
        return GaussianMixture(*self.mixture_parameters(h))

    def mixture_parameters(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``h``: ``(n, H)`` -> the mixture's logits ``(n, K)``, means and standard deviations
        ``(n, K, D)`` (for callers that transform them before building the mixture)."""
        n, k, d = h.shape[0], self.components, self.target_dim
        # float32 even under bf16 autocast: densities and log-sum-exps stay in full precision
        loc = full_precision(self.mean(h)).view(n, k, d)
        log_scale = soft_clamp(0.5 * full_precision(self.log_var(h)), *self.log_scale_bounds).view(n, k, d)
        return full_precision(self.logits(h)), loc, log_scale.exp()
