"""Predictive distributions for many rows at once, in original units, NumPy in and out.

What :meth:`ebreg.estimators.EBMRegressor.predict_dist` and
:meth:`ebreg.estimators.MDNRegressor.predict_dist` return, for one model or an ensemble.
Both classes derive from :class:`PredictiveDistribution` and answer with scipy's and
NGBoost's names: ``mean()``, ``std()``, ``var()``, ``cov()``, ``median()``, ``ppf(q)``,
``cdf(y)``, ``pdf(y)``, ``logpdf(y)``, ``interval(confidence)``, ``sample(m)``, ``crps(y)``,
``energy_score(y)``, ``marginal(j)``; ``len(d)``, ``d[i]``, ``d[a:b]`` and ``d[mask]``
select rows.

One shape rule, torch.distributions' (sample + batch + event):

* batch shape: ``(n,)`` for n rows, ``()`` for one row picked by an integer (``d[3]``);
* event shape: ``()`` when the estimator was fitted on ``y`` of shape ``(n,)``, else ``(D,)``;
* ``mean()``, ``std()``, ``var()``, ``median()``: batch + event; ``cov()``: batch + ``(D, D)``;
* ``sample(m)``: ``(m,)`` + batch + event;
* ``logpdf(y)``, ``pdf(y)``, ``energy_score(y)``: ``y`` is any leading shape + batch + event
  (broadcast like NumPy), the result drops the event: ``logpdf(grid[:, None])`` of a grid
  ``(G,)`` gives ``(G, n)``;
* one-dimensional targets only: ``cdf(y)``, ``crps(y)`` like ``logpdf``; ``ppf(q)`` takes
  levels that broadcast against the batch (a number, ``(n,)``, or ``(L, 1)`` for L levels of
  every row) and returns them with the event; ``interval(c)`` gives ``(low, high)``. For
  D > 1 these are asked of ``marginal(j)``.

:class:`MixturePredictive` (MDNs) is exact except for draws. :class:`SNISPredictive` (EBMs)
answers from self-normalised importance sampling with the learned proposal. Several
quantities asked together (:meth:`PredictiveDistribution.summary`) take one pass.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scoringrules
import torch
from torch import Tensor

from .inference import Models, WeightedSamples, log_density, map_chunks, marginal_log_density, members
from .metrics import crps_weighted
from .proposals import GaussianMixture
from .transforms import TargetTransform

__all__ = ["PredictiveDistribution", "MixturePredictive", "SNISPredictive", "TransformedPredictive"]

_BISECTION_STEPS = 64
#: up to this many candidates (rows x M), the weighted samples are kept between queries
CACHE_CANDIDATES = 2**24
#: draws from a mixture behind its energy score (a Monte Carlo estimate with a fixed seed)
ENERGY_SCORE_DRAWS = 1000
#: Gauss-Hermite nodes per mixture component for expectations of functions of the target
_HERMITE_NODES = 64
#: quantile levels behind the CRPS of a transformed target (midpoint rule over (0, 1))
_CRPS_LEVELS = 400
#: pairwise distances held at once by the weighted energy score
_PAIRS_AT_ONCE = 2**22


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _seed(random_state: int | np.random.Generator | None) -> int:
    """A torch seed from scipy-style ``random_state``: an integer as is, a NumPy generator draws
    one, ``None`` a fresh one."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**62))
    if random_state is None:
        return int(np.random.default_rng().integers(2**62))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    raise ValueError(f"random_state must be an integer, a numpy Generator or None, got {random_state!r}")


def _check_draws(m: object) -> int:
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 0:
        raise ValueError(f"the number of draws must be a non-negative integer, got {m!r}")
    return int(m)


def check_level(value: object, name: str = "confidence") -> float:
    """``value`` as a float strictly between 0 and 1 (an interval's coverage), else ``ValueError``
    naming it ``name``."""
    if not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return float(value)


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}", FutureWarning,
                  stacklevel=3)


class PredictiveDistribution:
    """The predictive distribution of n rows (see the module's shape rule).

    Subclasses implement the ``_``-prefixed methods on internal tensors: rows on axis 0 after
    any leading axes, float64, the event always ``(D,)``. The public methods convert shapes,
    check input and return NumPy arrays.
    """

    def __init__(self, rows: int, target_dim: int, squeeze: bool, one_row: bool = False) -> None:
        self._n, self.target_dim, self.squeeze, self._one_row = rows, target_dim, squeeze, one_row

    # ---- what subclasses provide -----------------------------------------------------------
    def _moments(self) -> tuple[Tensor, Tensor]:  # mean (n, D), variance (n, D)
        raise NotImplementedError

    def _cov(self) -> Tensor:  # (n, D, D)
        raise NotImplementedError

    def _ppf(self, levels: Tensor) -> Tensor:  # levels (k, n) -> (k, n), D = 1
        raise NotImplementedError

    def _cdf(self, values: Tensor) -> Tensor:  # (k, n) -> (k, n), D = 1
        raise NotImplementedError

    def _crps(self, values: Tensor) -> Tensor:  # (k, n) -> (k, n), D = 1
        raise NotImplementedError

    def _logpdf(self, values: Tensor) -> Tensor:  # (k, n, D) -> (k, n)
        raise NotImplementedError

    def _sample(self, m: int, seed: int) -> Tensor:  # (m, n, D)
        raise NotImplementedError

    def _energy_score(self, values: Tensor) -> Tensor:  # (n, D) -> (n,)
        raise NotImplementedError

    def _expect(self, fn: Callable[[Tensor], Tensor]) -> Tensor:  # E[fn(Y)] (n,), fn maps (S, n) -> (S, n), D = 1
        raise NotImplementedError

    def _take(self, rows: np.ndarray, one_row: bool) -> PredictiveDistribution:
        raise NotImplementedError

    def _marginal(self, j: int) -> PredictiveDistribution:
        raise NotImplementedError

    def _describe(self) -> str:
        raise NotImplementedError

    # ---- shapes ------------------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(n,)``, or ``()`` for one row picked by an integer index."""
        return () if self._one_row else (self._n,)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``()`` for a squeezed one-dimensional target, else ``(D,)``."""
        return () if self.squeeze else (self.target_dim,)

    def __len__(self) -> int:
        if self._one_row:
            raise TypeError("len() of a single row's distribution")
        return self._n

    def __getitem__(self, index: Any) -> PredictiveDistribution:
        """Rows by an integer (a one-row distribution, batch shape ``()``), a slice, an integer
        array or a boolean mask of length n."""
        if self._one_row:
            raise IndexError("a single row's distribution cannot be indexed further")
        if isinstance(index, numbers.Integral) and not isinstance(index, bool):
            if not -self._n <= index < self._n:
                raise IndexError(f"row {index} out of range for {self._n} rows")
            return self._take(np.array([index % self._n]), one_row=True)
        if isinstance(index, slice):
            return self._take(np.arange(self._n)[index], one_row=False)
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (self._n,):
                raise IndexError(f"a boolean mask must have shape ({self._n},), got {rows.shape}")
            return self._take(np.flatnonzero(rows), one_row=False)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"rows are selected by an integer, a slice, integers or a boolean mask, got {index!r}")
        if rows.size and not (-self._n <= rows.min() and rows.max() < self._n):
            raise IndexError(f"row indices out of range for {self._n} rows")
        return self._take(rows % max(self._n, 1), one_row=False)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(batch_shape={self.batch_shape}, event_shape={self.event_shape}, "
                f"{self._describe()})")

    def _out(self, t: Tensor, event: bool) -> np.ndarray:
        """Internal ``(*lead, n[, D])`` -> public: the event squeezed, the row axis dropped for
        one row."""
        out = _numpy(t)
        if self._one_row:
            out = out[..., 0, :] if event else out[..., 0]
        return out[..., 0] if event and self.squeeze else out

    def _values(self, y: Any, what: str) -> tuple[Tensor, tuple[int, ...]]:
        """Public ``y`` (leading + batch + event) -> internal ``(k, n, D)`` and the leading shape."""
        arr = np.asarray(y, dtype=np.float64)
        event = self.event_shape
        if arr.ndim < len(event) or arr.shape[arr.ndim - len(event):] != event:
            raise ValueError(f"{what}: y must end in the event shape {event}, got shape {arr.shape}")
        if not self._one_row:
            try:
                shape = np.broadcast_shapes(arr.shape, (self._n, *event))
            except ValueError:
                raise ValueError(f"{what}: y of shape {arr.shape} does not broadcast against the "
                                 f"{self._n} rows (shape {(self._n, *event)})") from None
        else:
            shape = (*arr.shape[:arr.ndim - len(event)], 1, *event)
            arr = arr.reshape(shape)
        arr = np.broadcast_to(arr, shape)
        lead = shape[:len(shape) - len(event) - 1]
        t = torch.tensor(arr).reshape(-1, self._n, self.target_dim)  # a copy: arr may be a read-only view
        return t, lead

    def _lead(self, t: Tensor, lead: tuple[int, ...]) -> np.ndarray:
        """Internal ``(k, n)`` -> public ``lead + batch``."""
        out = _numpy(t).reshape(*lead, self._n)
        return out[..., 0] if self._one_row else out

    def _need_1d(self, what: str) -> None:
        if self.target_dim != 1:
            raise ValueError(f"{what} needs a one-dimensional target; this distribution has {self.target_dim}: "
                             f"ask marginal(j) for target j")

    # ---- moments -------------------------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """Predictive mean: batch + event."""
        return self._out(self._moments()[0], event=True)

    def var(self) -> np.ndarray:
        """Predictive variance per target: batch + event."""
        return self._out(self._moments()[1], event=True)

    def std(self) -> np.ndarray:
        """Predictive standard deviation per target: batch + event."""
        return self._out(self._moments()[1].sqrt(), event=True)

    def cov(self) -> np.ndarray:
        """Predictive covariance: batch + ``(D, D)``."""
        out = _numpy(self._cov())
        return out[0] if self._one_row else out

    # ---- one-dimensional quantities --------------------------------------------------------------
    def ppf(self, q: Any) -> np.ndarray:
        """Quantile function at levels ``q`` in [0, 1] broadcast against the batch: a number
        -> batch + event; ``(L, 1)`` -> ``(L,)`` + batch + event."""
        self._need_1d("ppf")
        levels = np.asarray(q, dtype=np.float64)
        if not np.all(np.isfinite(levels)) or np.any((levels < 0) | (levels > 1)):
            raise ValueError(f"quantile levels must lie in [0, 1], got {q}")
        t, lead = self._values(levels[..., None] if not self.squeeze else levels, "ppf")
        out = self._lead(self._ppf(t[..., 0]), lead)
        return out if self.squeeze else out[..., None]

    def median(self) -> np.ndarray:
        """Predictive median: batch + event (D = 1)."""
        return self.ppf(0.5)

    def interval(self, confidence: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central interval holding ``confidence`` of the mass: ``(low, high)``, each batch + event."""
        c = check_level(confidence)
        self._need_1d("interval")
        bounds = self.ppf(np.reshape([(1 - c) / 2, (1 + c) / 2], (2,) + (1,) * len(self.batch_shape)))
        return bounds[0], bounds[1]

    def cdf(self, y: Any) -> np.ndarray:
        """``P(Y <= y)``: ``y`` leading + batch + event -> leading + batch (D = 1)."""
        self._need_1d("cdf")
        t, lead = self._values(y, "cdf")
        return self._lead(self._cdf(t[..., 0]), lead)

    def crps(self, y: Any) -> np.ndarray:
        """Continuous ranked probability score at ``y`` (lower is better): leading + batch (D = 1)."""
        self._need_1d("crps")
        t, lead = self._values(y, "crps")
        return self._lead(self._crps(t[..., 0]), lead)

    # ---- densities, draws, scores ----------------------------------------------------------------
    def logpdf(self, y: Any) -> np.ndarray:
        """Log-density at ``y``: leading + batch + event -> leading + batch."""
        t, lead = self._values(y, "logpdf")
        return self._lead(self._logpdf(t), lead)

    def pdf(self, y: Any) -> np.ndarray:
        """Density at ``y``: leading + batch + event -> leading + batch."""
        return np.exp(self.logpdf(y))

    def sample(self, m: int, random_state: int | np.random.Generator | None = None) -> np.ndarray:
        """``m`` draws per row: ``(m,)`` + batch + event. ``random_state``: an integer for
        reproducible draws, a NumPy generator, or None for fresh ones."""
        m = _check_draws(m)
        out = _numpy(self._sample(m, _seed(random_state)))  # (m, n, D)
        if self.squeeze:
            out = out[..., 0]
        return out[:, 0] if self._one_row else out

    def energy_score(self, y: Any) -> np.ndarray:
        """Energy score ``E|Y - y| - E|Y - Y'| / 2`` (Euclidean; lower is better) at one target
        per row: batch + event -> batch. For one target it is the CRPS, and computed as such."""
        t, lead = self._values(y, "energy_score")
        if lead:
            raise ValueError(f"energy_score takes one target per row, got leading shape {lead}")
        out = _numpy(self._crps(t[..., 0])[0] if self.target_dim == 1 else self._energy_score(t[0]))
        return out[0] if self._one_row else out

    def marginal(self, j: int) -> PredictiveDistribution:
        """The distribution of target ``j`` alone, one-dimensional (event shape ``()``)."""
        if not isinstance(j, numbers.Integral) or not -self.target_dim <= j < self.target_dim:
            raise IndexError(f"target {j!r} out of range for {self.target_dim} targets")
        return self._marginal(int(j) % self.target_dim)

    def summary(self, confidence: float | None = None, quantiles: Sequence[float] = (), samples: int = 0,
                random_state: int | np.random.Generator | None = None) -> dict[str, Any]:
        """Mean and std, and where asked an interval, quantiles and draws, in one pass over the
        rows: ``{"mean", "std", "interval": (low, high), "quantiles": (L,) + batch + event,
        "samples": (m,) + batch + event}``. The same values as the single methods."""
        mean, var = self._moments()
        out: dict[str, Any] = {"mean": self._out(mean, event=True), "std": self._out(var.sqrt(), event=True)}
        if confidence is not None:
            out["interval"] = self.interval(confidence)
        if len(quantiles):
            out["quantiles"] = self.ppf(np.reshape(quantiles, (-1,) + (1,) * len(self.batch_shape)))
        if samples:
            out["samples"] = self.sample(samples, random_state)
        return out

    # ---- names of the previous release ---------------------------------------------------------
    @property
    def stddev(self) -> np.ndarray:
        """Deprecated: :meth:`std`."""
        _deprecated("stddev", "std()")
        return self.std()

    def log_prob(self, y: Any) -> np.ndarray:
        """Deprecated: :meth:`logpdf`."""
        _deprecated("log_prob(y)", "logpdf(y)")
        return self.logpdf(y)

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Deprecated: :meth:`ppf`; levels last, ``(n, L)``, as the previous release had them."""
        _deprecated("quantile(q)", "ppf(q), levels first")
        if np.ndim(q) == 0:
            return self.ppf(q)
        return np.moveaxis(self.ppf(np.reshape(q, (-1,) + (1,) * len(self.batch_shape))), 0, -1)


class MixturePredictive(PredictiveDistribution):
    """An MDN's Gaussian mixture per row (an ensemble's pooled): every quantity is exact
    (quantiles by bisection on the CDF), except draws and the energy score (from
    :data:`ENERGY_SCORE_DRAWS` draws with a fixed seed)."""

    def __init__(self, mixture: GaussianMixture, squeeze: bool = False, one_row: bool = False) -> None:
        loc = mixture.loc
        super().__init__(loc.shape[0], loc.shape[-1], squeeze, one_row)
        self.mixture = GaussianMixture(mixture.mixture_distribution.logits.double(), loc.double(),
                                       mixture.scale.double())

    def _describe(self) -> str:
        return f"components={self.mixture.loc.shape[1]}"

    def _take(self, rows: np.ndarray, one_row: bool) -> MixturePredictive:
        m, idx = self.mixture, torch.as_tensor(rows, dtype=torch.long, device=self.mixture.loc.device)
        return MixturePredictive(GaussianMixture(m.mixture_distribution.logits[idx], m.loc[idx], m.scale[idx]),
                                 self.squeeze, one_row)

    def _marginal(self, j: int) -> MixturePredictive:
        m = self.mixture
        return MixturePredictive(GaussianMixture(m.mixture_distribution.logits, m.loc[..., j:j + 1],
                                                 m.scale[..., j:j + 1]), True, self._one_row)

    def _moments(self) -> tuple[Tensor, Tensor]:
        return self.mixture.mean, self.mixture.variance

    def _cov(self) -> Tensor:
        m = self.mixture
        w = m.mixture_distribution.probs[..., None, None]  # (n, K, 1, 1)
        second = (w * (torch.diag_embed(m.scale.square()) + m.loc[..., :, None] * m.loc[..., None, :])).sum(1)
        mean = m.mean
        return second - mean[:, :, None] * mean[:, None, :]

    def _ppf(self, levels: Tensor) -> Tensor:
        m = self.mixture
        loc, scale = m.loc[..., 0], m.scale[..., 0]  # (n, K)
        target = levels.to(loc.device)
        lo = (loc - 40 * scale).min(-1).values.expand_as(target).clone()  # (k, n)
        hi = (loc + 40 * scale).max(-1).values.expand_as(target).clone()
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            below = m.cdf(mid.unsqueeze(-1)) < target
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def _cdf(self, values: Tensor) -> Tensor:
        return self.mixture.cdf(values.to(self.mixture.loc.device).unsqueeze(-1))

    def _crps(self, values: Tensor) -> Tensor:
        m = self.mixture
        return torch.as_tensor(np.asarray(scoringrules.crps_mixnorm(
            _numpy(values), _numpy(m.loc[..., 0]), _numpy(m.scale[..., 0]), _numpy(m.mixture_distribution.probs),
            backend="numpy"), dtype=np.float64))

    def _logpdf(self, values: Tensor) -> Tensor:
        return self.mixture.log_prob(values.to(self.mixture.loc.device))

    def _sample(self, m: int, seed: int) -> Tensor:
        gen = torch.Generator(self.mixture.loc.device).manual_seed(seed)
        return self.mixture.sample((m,), generator=gen)

    def _expect(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """Gauss-Hermite quadrature in each component."""
        nodes, weights = (torch.as_tensor(a) for a in np.polynomial.hermite.hermgauss(_HERMITE_NODES))
        m = self.mixture
        loc, scale = m.loc[..., 0].T, m.scale[..., 0].T  # (K, n)
        z = loc[:, None] + math.sqrt(2) * scale[:, None] * nodes[None, :, None]  # (K, I, n)
        w = m.mixture_distribution.probs.T[:, None] * weights[None, :, None] / math.sqrt(math.pi)
        return (w * fn(z.reshape(-1, z.shape[-1])).view_as(z)).sum((0, 1))

    def _energy_score(self, values: Tensor) -> Tensor:
        draws = _numpy(self._sample(ENERGY_SCORE_DRAWS, 0)).transpose(1, 0, 2)  # (n, m, D)
        return torch.as_tensor(np.asarray(scoringrules.energy_score(_numpy(values), draws, backend="numpy")))


class SNISPredictive(PredictiveDistribution):
    """An EBM's prediction per row by self-normalised importance sampling with its learned
    proposal (M samples per row, drawn in bounded-memory chunks); for an ensemble of EBMs,
    the equal-weight mixture of the members, M samples from each.

    Every query sees the same samples (common noise from ``seed``), so the answers are
    consistent with each other and do not depend on how the rows are batched or selected.
    Up to :data:`CACHE_CANDIDATES` candidates the weighted samples are drawn once and kept (a
    few hundred MB at most); beyond, each query redraws them chunk by chunk in bounded memory,
    and :meth:`summary` answers all its quantities from one such pass.

    ``target``: for :meth:`marginal`, the one target this distribution describes (None: all).
    """

    def __init__(
        self,
        model: Models,
        x: Tensor,
        num_samples: int,
        seed: int,
        squeeze: bool = False,
        max_candidates: int | None = None,
        one_row: bool = False,
        target: int | None = None,
    ) -> None:
        full_dim = members(model)[0].energy.target_dim
        super().__init__(x.shape[0], 1 if target is not None else full_dim, squeeze, one_row)
        self.model, self.x, self.num_samples, self.seed = model, x, num_samples, seed
        self.max_candidates, self.target = max_candidates, target
        self._cached: WeightedSamples | None = None

    def _describe(self) -> str:
        count = len(members(self.model))
        return f"members={count}, samples_per_row={self.num_samples}" + (
            "" if self.target is None else f", target={self.target}")

    def _take(self, rows: np.ndarray, one_row: bool) -> SNISPredictive:
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.x.device)
        out = SNISPredictive(self.model, self.x[idx], self.num_samples, self.seed, self.squeeze, self.max_candidates,
                             one_row, self.target)
        if self._cached is not None:  # common noise: the kept samples of these rows are theirs alone
            ws = self._cached
            out._cached = WeightedSamples(ws.samples[:, idx], ws.log_weights[:, idx], ws.members)
        return out

    def _marginal(self, j: int) -> SNISPredictive:
        out = SNISPredictive(self.model, self.x, self.num_samples, self.seed, True, self.max_candidates,
                             self._one_row, j if self.target is None else self.target)
        out._cached = self._cached
        return out

    def _view(self, ws: WeightedSamples) -> WeightedSamples:
        """The weighted samples of the described target(s)."""
        if self.target is None:
            return ws
        return WeightedSamples(ws.samples[..., self.target:self.target + 1], ws.log_weights, ws.members)

    def _stream(self, fn: Callable[[WeightedSamples, slice], Tensor]) -> Tensor:
        gen = torch.Generator(self.x.device).manual_seed(self.seed)
        with torch.no_grad():
            return map_chunks(fn, self.model, self.x, self.num_samples, gen, self.max_candidates,
                              common_noise=True)

    def _kept(self) -> bool:
        return self._n * self.num_samples * len(members(self.model)) <= CACHE_CANDIDATES

    def _map(self, fn: Callable[[WeightedSamples, slice], Tensor]) -> Tensor:
        """``fn(weighted samples of rows, rows)`` -> rows first, over all rows; the weighted
        samples are the full target's (see :meth:`_view`)."""
        if not self._kept():
            return self._stream(fn)
        if self._cached is None:
            # per row: its samples, then its log-weights, M values each in a row of memory (the
            # layout they are drawn and scored in: no transposing copies); weights() and the
            # quantiles' sort then run along memory
            packed = self._stream(lambda ws, _: torch.cat([ws.samples.permute(1, 2, 0),
                                                           ws.log_weights.T.unsqueeze(1)], 1))  # (n, D + 1, E * M)
            d = packed.shape[1] - 1
            self._cached = WeightedSamples(packed[:, :d].permute(2, 0, 1), packed[:, d].T, len(members(self.model)))
        with torch.no_grad():
            return fn(self._cached, slice(None))

    def _per_value(self, values: Tensor, fn: Callable[[WeightedSamples, slice, Tensor], Tensor]) -> Tensor:
        """``fn(weighted samples, rows, value (n_rows, ...))`` for each of the k leading values of
        ``values`` ``(k, n, ...)`` -> ``(k, n)``."""
        v = values.to(self.x.device, torch.float32)
        return self._map(lambda ws, rows: torch.stack([fn(ws, rows, v[i, rows]) for i in range(len(v))], 1)).T

    def _moments(self) -> tuple[Tensor, Tensor]:
        both = self._map(lambda ws, _: torch.cat(self._view(ws).moments(), 1))
        d = self.target_dim
        return both[:, :d].double(), both[:, d:].double()

    def _cov(self) -> Tensor:
        def cov(ws: WeightedSamples, _: slice) -> Tensor:
            ws = self._view(ws)
            w = ws.weights().unsqueeze(-1)  # (E * M, n, 1)
            centred = ws.samples - (w * ws.samples).sum(0)
            return torch.einsum("mnd,mne->nde", w * centred, centred)
        return self._map(cov).double()

    def ess(self) -> np.ndarray:
        """Effective sample size per row (batch shape), between 1 and E * M: how many of the
        proposal samples effectively count (low values mean the proposal misses the EBM's mass)."""
        out = _numpy(self._map(lambda ws, _: ws.ess()))
        return out[0] if self._one_row else out

    def _ppf(self, levels: Tensor) -> Tensor:
        lv = levels.to(self.x.device, torch.float32)
        return self._map(lambda ws, rows: self._view(ws).quantile(lv[:, rows]).T).T.double()

    def _cdf(self, values: Tensor) -> Tensor:
        return self._per_value(values, lambda ws, _, v: self._view(ws).cdf(v)).double()

    def _crps(self, values: Tensor) -> Tensor:
        return self._per_value(values, lambda ws, _, v: crps_weighted(self._view(ws), v)).double()

    def _logpdf(self, values: Tensor) -> Tensor:
        if self.target is None:
            return self._per_value(values, lambda ws, rows, v: log_density(self.model, self.x[rows], v, ws)).double()
        gen = torch.Generator(self.x.device)

        def marginal(ws: WeightedSamples, rows: slice, v: Tensor) -> Tensor:
            gen.manual_seed(self.seed + 2)
            return marginal_log_density(self.model, self.x[rows], v, self.target, ws, gen)
        return self._per_value(values, marginal).double()

    def _expect(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        def expect(ws: WeightedSamples, _: slice) -> Tensor:
            ws = self._view(ws)
            return (ws.weights().double() * fn(ws.samples[..., 0].double())).sum(0)
        return self._map(expect)

    def _uniforms(self, m: int, seed: int) -> Tensor:
        """``(n, m)`` uniforms for the draws: each row's own, whatever the chunks."""
        return torch.rand((self._n, m), generator=torch.Generator(self.x.device).manual_seed(seed), device=self.x.device)

    def _sample(self, m: int, seed: int) -> Tensor:
        u = self._uniforms(m, seed)
        return self._map(lambda ws, rows: self._view(ws).resample(m, uniforms=u[rows]).transpose(0, 1)).transpose(0, 1).double()

    def _energy_score(self, values: Tensor) -> Tensor:
        """Exact for the weighted samples: the pairwise term sums ``(E M)^2`` distances per row, in
        blocks of at most :data:`_PAIRS_AT_ONCE`."""
        v = values.to(self.x.device, torch.float64)

        def score(ws: WeightedSamples, rows: slice) -> Tensor:
            ws = self._view(ws)
            w, s, y = ws.weights().T.double(), ws.samples.transpose(0, 1).double(), v[rows]  # (n, S), (n, S, D)
            size = s.shape[1]
            near = (w * (s - y[:, None]).norm(dim=-1)).sum(1)
            spread = torch.zeros_like(near)
            step = max(1, _PAIRS_AT_ONCE // (size * size))  # rows at once
            block = max(1, _PAIRS_AT_ONCE // (step * size))  # samples on the pairs' other side at once
            for r in range(0, len(y), step):
                for b in range(0, size, block):
                    pair = torch.cdist(s[r:r + step], s[r:r + step, b:b + block])  # (rows, S, B)
                    spread[r:r + step] += torch.einsum("nm,nmk,nk->n", w[r:r + step], pair, w[r:r + step, b:b + block])
            return near - spread / 2
        return self._map(score)

    def summary(self, confidence: float | None = None, quantiles: Sequence[float] = (), samples: int = 0,
                random_state: int | np.random.Generator | None = None) -> dict[str, Any]:
        if self._kept():  # the samples are kept: every query reads them, no pass to share
            return super().summary(confidence, quantiles, samples, random_state)
        levels = list(quantiles)
        if confidence is not None:
            c = check_level(confidence)
            self._need_1d("interval")
            levels += [(1 - c) / 2, (1 + c) / 2]
        if levels:
            self._need_1d("quantiles")
            if not all(0 <= q <= 1 for q in levels):
                raise ValueError(f"quantile levels must lie in [0, 1], got {list(quantiles)}")
        m, d = _check_draws(samples), self.target_dim
        u = self._uniforms(m, _seed(random_state)) if m else None
        lv = torch.tensor(levels, dtype=torch.float32)

        def everything(ws: WeightedSamples, rows: slice) -> Tensor:
            ws = self._view(ws)
            parts = list(ws.moments())  # mean and variance, (rows, D) each
            if levels:
                parts.append(ws.quantile(lv.to(ws.samples.device)).reshape(len(levels), -1).T)  # (rows, L)
            if m:
                parts.append(ws.resample(m, uniforms=u[rows]).transpose(0, 1).reshape(ws.samples.shape[1], -1))  # (rows, m D)
            return torch.cat(parts, 1)

        packed = self._map(everything).double()  # (n, 2 D + L + m D)
        out: dict[str, Any] = {"mean": self._out(packed[:, :d], True), "std": self._out(packed[:, d:2 * d].sqrt(), True)}
        if levels:
            q = packed[:, 2 * d:2 * d + len(levels)].T.unsqueeze(-1)  # (L, n, 1)
            found = self._out(q, True)
            if len(quantiles):
                out["quantiles"] = found[:len(quantiles)]
            if confidence is not None:
                out["interval"] = (found[-2], found[-1])
        if m:
            draws = packed[:, 2 * d + len(levels):].reshape(self._n, m, d).transpose(0, 1)
            out["samples"] = self._out(draws, True)
        return out



class TransformedPredictive(PredictiveDistribution):
    """The distribution of ``y = T^{-1}(z)`` for a one-dimensional ``z`` from ``base`` (a target
    learned through ``target_transform``): quantiles, CDF and draws map through ``T^{-1}``
    exactly; the density gains ``log |dT/dy|``; mean and variance are expectations under the base
    (Gauss-Hermite per mixture component, or the weighted samples); the CRPS integrates the
    quantile score over :data:`_CRPS_LEVELS` levels. Values outside the support have density 0."""

    def __init__(self, base: PredictiveDistribution, transform: TargetTransform) -> None:
        if base.target_dim != 1:
            raise ValueError(f"a target transform needs one target; the base distribution has {base.target_dim}")
        super().__init__(base._n, 1, base.squeeze, base._one_row)
        self.base, self.transform = base, transform
        if hasattr(base, "ess"):
            self.ess = base.ess

    def _describe(self) -> str:
        return f"transform={self.transform.kind!r}, support {self.transform.support()}, base {self.base!r}"

    def _take(self, rows: np.ndarray, one_row: bool) -> TransformedPredictive:
        return TransformedPredictive(self.base._take(rows, one_row), self.transform)

    def _marginal(self, j: int) -> TransformedPredictive:
        return self

    def _moments(self) -> tuple[Tensor, Tensor]:
        mean = self._expect(lambda y: y)
        var = self._expect(lambda y: (y - mean) ** 2)
        return mean[:, None], var[:, None]

    def _expect(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        return self.base._expect(lambda z: fn(self.transform.inverse(z)))

    def _cov(self) -> Tensor:
        return self._moments()[1][:, :, None]

    def _ppf(self, levels: Tensor) -> Tensor:
        return self.transform.inverse(self.base._ppf(levels).double())

    def _cdf(self, values: Tensor) -> Tensor:
        return self.base._cdf(self.transform.forward(values))

    def _logpdf(self, values: Tensor) -> Tensor:
        inside = torch.as_tensor(self.transform.inside(values[..., 0].numpy()))
        z = self.transform.forward(torch.where(inside[..., None], values, self._inner_point()))
        out = self.base._logpdf(z).double() + self.transform.log_abs_det_jacobian(values[..., 0])
        return torch.where(inside, out, -math.inf)

    def _inner_point(self) -> float:
        t = self.transform
        return 1.0 if t.kind == "log" else (t.low + t.high) / 2

    def _crps(self, values: Tensor) -> Tensor:
        levels = (torch.arange(_CRPS_LEVELS, dtype=torch.float64) + 0.5) / _CRPS_LEVELS
        q = self._ppf(levels[:, None].expand(-1, self._n))  # (L, n)
        y = values[:, None]  # (k, 1, n)
        score = ((y < q).double() - levels[:, None]) * (q - y)  # the quantile score, (k, L, n)
        return 2 * score.mean(1)

    def _sample(self, m: int, seed: int) -> Tensor:
        return self.transform.inverse(self.base._sample(m, seed).double())
