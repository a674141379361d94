"""Predictive distributions for many rows at once, in original units, as NumPy arrays.

What :meth:`ebreg.estimators.EBMRegressor.predict_dist` and
:meth:`ebreg.estimators.MDNRegressor.predict_dist` return. Both classes answer the same
questions: ``mean``, ``stddev``, ``quantile``, ``interval``, ``sample``, ``log_prob``, ``cdf``,
``crps``.
Shapes put rows first: with ``squeeze`` (the estimator was fitted on y of shape ``(n,)``)
per-row values are ``(n,)``, otherwise ``(n, D)``; quantiles and samples add their own axis
after the rows. Quantiles, intervals and the CDF need D = 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scoringrules
import torch
from torch import Tensor

from ._shapes import as_targets
from .inference import Models, WeightedSamples, log_density, map_chunks, members
from .metrics import crps_weighted
from .proposals import GaussianMixture

__all__ = ["MixturePredictive", "SNISPredictive"]

_BISECTION_STEPS = 64
#: up to this many candidates (rows x M), the weighted samples are kept between queries
CACHE_CANDIDATES = 2**24


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"interval level must lie in (0, 1), got {level}")


def _levels(q: float | Sequence[float]) -> Tensor:
    levels = torch.as_tensor(q, dtype=torch.float64)
    if levels.dim() > 1 or ((levels < 0) | (levels > 1)).any() or not torch.isfinite(levels).all():
        raise ValueError(f"quantile levels must be a number or a list of numbers in [0, 1], got {q}")
    return levels


class _Predictive:
    """Shared conversions; subclasses hold the rows' distribution."""

    def __init__(self, target_dim: int, squeeze: bool) -> None:
        self.target_dim, self.squeeze = target_dim, squeeze

    def _rows(self, t: Tensor) -> np.ndarray:
        """``(n, D)`` -> ``(n,)`` when squeezing."""
        out = _numpy(t)
        return out[:, 0] if self.squeeze else out

    def _draws(self, t: Tensor) -> np.ndarray:
        """``(k, n, D)`` -> ``(n, k)`` when squeezing, else ``(n, k, D)``."""
        out = _numpy(t).transpose(1, 0, 2)
        return out[..., 0] if self.squeeze else out

    def _targets(self, y: np.ndarray | Tensor, device: torch.device) -> Tensor:
        t = as_targets(torch.as_tensor(np.ascontiguousarray(y, dtype=np.float32), device=device))
        if t.shape[1] != self.target_dim:
            raise ValueError(f"y has {t.shape[1]} columns, the model predicts {self.target_dim}")
        return t

    def _need_1d(self, what: str) -> None:
        if self.target_dim != 1:
            raise ValueError(f"{what} needs one-dimensional targets; this model predicts {self.target_dim}")

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        raise NotImplementedError

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central interval holding ``level`` of the mass: ``(low, high)``, each ``(n,)``."""
        _check_level(level)
        bounds = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return bounds[:, 0], bounds[:, 1]


class MixturePredictive(_Predictive):
    """An MDN's Gaussian-mixture prediction per row: every quantity is exact (quantiles by
    bisection on the CDF), except ``sample``, which draws."""

    def __init__(self, mixture: GaussianMixture, squeeze: bool = False) -> None:
        super().__init__(mixture.loc.shape[-1], squeeze)
        self.mixture = mixture

    @property
    def mean(self) -> np.ndarray:
        return self._rows(self.mixture.mean)

    @property
    def stddev(self) -> np.ndarray:
        return self._rows(self.mixture.variance.sqrt())

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        """Exact log-density ``(n,)`` of one target per row."""
        return _numpy(self.mixture.log_prob(self._targets(y, self.mixture.loc.device)))

    def cdf(self, y: np.ndarray) -> np.ndarray:
        """Exact CDF ``(n,)`` at one target per row (D = 1)."""
        self._need_1d("cdf")
        return _numpy(self.mixture.cdf(self._targets(y, self.mixture.loc.device)))

    def crps(self, y: np.ndarray) -> np.ndarray:
        """Exact CRPS ``(n,)`` of the mixture at one target per row (D = 1)."""
        self._need_1d("crps")
        m = self.mixture
        obs = _numpy(self._targets(y, m.loc.device))[:, 0]
        return np.asarray(scoringrules.crps_mixnorm(
            obs, _numpy(m.loc[..., 0]), _numpy(m.scale[..., 0]), _numpy(m.mixture_distribution.probs),
            backend="numpy"), dtype=np.float64)

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Quantiles: ``q`` a number -> ``(n,)``; a list of L levels -> ``(n, L)`` (D = 1)."""
        self._need_1d("quantile")
        levels = _levels(q)
        m = self.mixture
        loc, scale = m.loc.double().squeeze(-1), m.scale.double().squeeze(-1)  # (n, K)
        exact = GaussianMixture(m.mixture_distribution.logits.double(), loc.unsqueeze(-1), scale.unsqueeze(-1))
        target = levels.reshape(-1, 1).to(loc.device)  # (L, 1)
        lo = (loc - 40 * scale).min(-1).values.expand(len(target), -1).clone()  # (L, n)
        hi = (loc + 40 * scale).max(-1).values.expand(len(target), -1).clone()
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            below = exact.cdf(mid.unsqueeze(-1)) < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        out = _numpy((lo + hi) / 2).T  # (n, L)
        return out[:, 0] if levels.dim() == 0 else out

    def sample(self, k: int, seed: int | None = None) -> np.ndarray:
        """``k`` draws per row: ``(n, k)`` (squeezed) or ``(n, k, D)``."""
        _check_draws(k)
        gen = None if seed is None else torch.Generator(self.mixture.loc.device).manual_seed(seed)
        return self._draws(self.mixture.sample((k,), generator=gen))


def _check_draws(k: object) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise ValueError(f"the number of draws must be a non-negative integer, got {k!r}")


class SNISPredictive(_Predictive):
    """An EBM's prediction per row by self-normalised importance sampling with its learned
    proposal (M samples per row, drawn in bounded-memory chunks); for an ensemble of EBMs,
    the equal-weight mixture of the members, M samples from each.

    Every query sees the same samples (common noise from ``seed``), so the answers are
    consistent with each other and do not depend on how the rows are batched. Up to
    :data:`CACHE_CANDIDATES` candidates the weighted samples are drawn once and kept (a few
    hundred MB at most); beyond, each query redraws them chunk by chunk in bounded memory.
    """

    def __init__(
        self,
        model: Models,
        x: Tensor,
        num_samples: int,
        seed: int,
        squeeze: bool = False,
        max_candidates: int | None = None,
    ) -> None:
        super().__init__(members(model)[0].energy.target_dim, squeeze)
        self.model, self.x, self.num_samples, self.seed = model, x, num_samples, seed
        self.max_candidates = max_candidates
        self._cached: WeightedSamples | None = None

    def _stream(self, fn: Callable[[WeightedSamples, slice], Tensor]) -> Tensor:
        gen = torch.Generator(self.x.device).manual_seed(self.seed)
        with torch.no_grad():
            return map_chunks(fn, self.model, self.x, self.num_samples, gen, self.max_candidates,
                              common_noise=True)

    def _map(self, fn: Callable[[WeightedSamples, slice], Tensor]) -> Tensor:
        count = len(members(self.model))
        if self.x.shape[0] * self.num_samples * count > CACHE_CANDIDATES:
            return self._stream(fn)
        if self._cached is None:
            # per row: its samples, then its log-weights, M values each in a row of memory (the
            # layout they are drawn and scored in: no transposing copies); weights() and the
            # quantiles' sort then run along memory
            packed = self._stream(lambda ws, _: torch.cat([ws.samples.permute(1, 2, 0),
                                                           ws.log_weights.T.unsqueeze(1)], 1))  # (n, D + 1, E * M)
            d = packed.shape[1] - 1
            self._cached = WeightedSamples(packed[:, :d].permute(2, 0, 1), packed[:, d].T, count)
        with torch.no_grad():
            return fn(self._cached, slice(None))

    @property
    def mean(self) -> np.ndarray:
        return self._rows(self._map(lambda ws, _: ws.mean()))

    @property
    def stddev(self) -> np.ndarray:
        return self._rows(self._map(lambda ws, _: ws.stddev()))

    @property
    def ess(self) -> np.ndarray:
        """Effective sample size per row ``(n,)``, between 1 and E * M: how many of the proposal
        samples effectively count (low values mean the proposal misses the EBM's mass)."""
        return _numpy(self._map(lambda ws, _: ws.ess()))

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        """``log p(y|x) = f(x, y) - log Z(x)`` ``(n,)``, with ``log Z`` estimated by SNIS with ``y``
        counted among the samples (:func:`ebreg.inference.log_density`)."""
        t = self._targets(y, self.x.device)
        return _numpy(self._map(lambda ws, rows: log_density(self.model, self.x[rows], t[rows], ws)))

    def cdf(self, y: np.ndarray) -> np.ndarray:
        """Weighted empirical CDF ``(n,)`` at one target per row (D = 1)."""
        self._need_1d("cdf")
        t = self._targets(y, self.x.device)
        return _numpy(self._map(lambda ws, rows: ws.cdf(t[rows])))

    def crps(self, y: np.ndarray) -> np.ndarray:
        """CRPS ``(n,)`` of the weighted samples at one target per row (D = 1)."""
        self._need_1d("crps")
        t = self._targets(y, self.x.device)
        return _numpy(self._map(lambda ws, rows: crps_weighted(ws, t[rows])))

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Weighted empirical quantiles: a number -> ``(n,)``; L levels -> ``(n, L)`` (D = 1)."""
        self._need_1d("quantile")
        levels = _levels(q)
        out = _numpy(self._map(lambda ws, _: ws.quantile(levels.reshape(-1).float()).T))  # (n, L)
        return out[:, 0] if levels.dim() == 0 else out

    def sample(self, k: int, seed: int | None = None) -> np.ndarray:
        """``k`` draws per row by resampling the weighted samples: ``(n, k)`` or ``(n, k, D)``."""
        _check_draws(k)
        gen = torch.Generator(self.x.device).manual_seed(self.seed + 1 if seed is None else seed)
        return self._draws(self._map(lambda ws, _: ws.resample(k, gen).transpose(0, 1)).transpose(0, 1))
