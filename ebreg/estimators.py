"""scikit-learn estimators: :class:`EBMRegressor` (an EBM with a learned proposal) and
:class:`MDNRegressor` (a mixture density network, optionally taught by an EBM).

Both take tables ``X`` ``(n, d)`` and targets ``y`` ``(n,)`` or ``(n, D)``, standardise them
inside the model, hold out ``validation_fraction`` of the training rows for early stopping
on the validation NLL, and keep the best epoch. With ``ensemble_size`` E > 1 they train E
models, each from its own seed and with its own validation part, and predict with their
equal-weight mixture. Training and prediction are seeded from ``random_state`` and never
touch the global random state when it is an integer.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import model_file
from .calibration import fit_temperature
from .config import DEVICE_PATTERN, REFINE_MDN_MODEL, REFINE_MDN_TRAIN, JointMethod, MDNMethod, ModelConfig, TrainConfig
from .ebm import ConditionalEBM
from .mdn import MixtureDensityNetwork
from .predictive import MixturePredictive, PredictiveDistribution, SNISPredictive, TransformedPredictive, check_level
from .proposals import pool_mixtures
from .transforms import target_transform

__all__ = ["EBMRegressor", "MDNRegressor", "load", "torch_device"]



#: ``ensemble_size="auto"``: this many models when the training data have fewer than
#: ``AUTO_ENSEMBLE_ROWS`` rows (where an ensemble is cheap and cuts the variance that small
#: data leave in one model), one model otherwise
AUTO_ENSEMBLE_SIZE, AUTO_ENSEMBLE_ROWS = 5, 2000

#: the parameters that ``search`` may vary (those an estimator has). Not ``patience``: a longer
#: wait only extends the run whose best validation epoch is kept, so it would always win; not
#: ``calibrate``: the temperature is fitted after the validation NLL that ranks candidates
SEARCHABLE = ("method", "components", "hidden", "energy_width", "num_samples", "epochs", "batch_size", "lr",
              "refine_mdn")

#: a target value shared by at least this many rows and this fraction of them is an atom
ATOM_MIN_ROWS, ATOM_MIN_FRACTION = 10, 0.005


#: the networks compute in float32: values beyond this magnitude overflow its squares and sums
FLOAT32_MAGNITUDE = 1e15
#: ...and a column whose spread is below this fraction of its magnitude rounds to a few values
FLOAT32_RESOLUTION = 1e-5


def _check_float32_range(name: str, kind: str, values: np.ndarray) -> None:
    """Refuse columns of ``values`` ``(n, d)`` that float32 networks cannot represent faithfully."""
    magnitude = np.abs(values).max(0)
    huge = np.flatnonzero(magnitude > FLOAT32_MAGNITUDE)
    if huge.size:
        j = int(huge[0])
        raise ValueError(f"{name}: {kind} column {j} reaches {magnitude[j]:.3g}, beyond what float32 arithmetic "
                         f"keeps finite ({FLOAT32_MAGNITUDE:g}); rescale it (divide by a power of ten) first")
    spread, centre = values.std(0), np.abs(values.mean(0))
    fine = np.flatnonzero((spread > 0) & (spread < FLOAT32_RESOLUTION * centre))
    if fine.size:
        j = int(fine[0])
        raise ValueError(f"{name}: {kind} column {j} varies by {spread[j]:.3g} around {values[:, j].mean():.6g}, "
                         f"less than float32 networks resolve; subtract a constant (such as its mean) first")


def _warn_on_repeated_targets(name: str, Y: np.ndarray) -> None:
    """Warn when one target value (row of ``Y`` ``(n, D)``) is shared by many rows: a density
    can put unbounded mass on it, so likelihoods there stop meaning anything."""
    values, counts = np.unique(Y, axis=0, return_counts=True)
    top = int(counts.argmax())
    if counts[top] >= max(ATOM_MIN_ROWS, ATOM_MIN_FRACTION * len(Y)):
        value = values[top].tolist()
        warnings.warn(
            f"{name}: {counts[top]} of {len(Y)} training targets ({counts[top] / len(Y):.1%}) equal "
            f"{value[0] if len(value) == 1 else value}; a continuous density can grow without bound on a "
            "repeated value, so its log-likelihood there (and the model's) can become arbitrarily large. "
            "If the targets are rounded, add uniform noise of one rounding step (dequantise) before fitting.",
            UserWarning, stacklevel=3)


def _like_rows(X: Any, values: np.ndarray, columns: list[Any]) -> Any:
    """``values`` ``(n, k)`` as a DataFrame indexed like ``X`` when ``X`` is one, else as they are."""
    if type(X).__module__.startswith("pandas") and hasattr(X, "index"):
        import pandas as pd

        return pd.DataFrame(values, index=X.index, columns=columns)
    return values


def _positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def torch_device(name: str) -> torch.device:
    """The device an estimator's ``device`` names (``"auto"``: CUDA, else MPS, else the CPU);
    ``ValueError`` in one line when it is not one of :data:`DEVICE_PATTERN`'s or is absent here."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(f"device must be cpu, cuda, cuda:N, mps or auto, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {name!r} is not available here ({torch.cuda.device_count()} CUDA device(s)); "
                         f"use device='cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available here; use device='cpu' or 'auto'")
    return device


class _ProbabilisticRegressor(RegressorMixin, BaseEstimator):
    """Fitting, validation split and shape handling shared by both estimators."""

    _methods: tuple[str, ...] = ()
    #: the settings ``search="auto"`` compares, the estimator's own first
    _auto_search: tuple[dict[str, Any], ...] = ()

    def __init__(
        self,
        method: str | None = None,
        components: int = 4,
        hidden: tuple[int, ...] = (64, 64),
        energy_width: int = 32,
        num_samples: int = 256,
        predict_samples: int = 1024,
        epochs: int = 150,
        batch_size: int = 64,
        lr: float = 3e-3,
        validation_fraction: float = 0.1,
        patience: int | None = 20,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
        ensemble_size: int | str = 1,
        log_dir: str | None = None,
        target_transform: str | None = None,
        target_bounds: tuple[float, float] | None = None,
        interval_calibration: str | None = None,
        search: str | list[dict[str, Any]] | None = None,
    ) -> None:
        self.method = method
        self.components = components
        self.hidden = hidden
        self.energy_width = energy_width
        self.num_samples = num_samples
        self.predict_samples = predict_samples
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.ensemble_size = ensemble_size
        self.log_dir = log_dir
        self.target_transform = target_transform
        self.target_bounds = target_bounds
        self.interval_calibration = interval_calibration
        self.search = search

    def __sklearn_tags__(self):  # noqa: ANN204
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.non_deterministic = False
        return tags

    def _method(self) -> str:
        """The method to train: ``method``, or this estimator's first method when None."""
        return self._methods[0] if self.method is None else self.method

    def _model_config(self, input_dim: int, target_dim: int) -> ModelConfig:
        w = self.energy_width
        return ModelConfig(input_dim=input_dim, target_dim=target_dim, feature_hidden=tuple(self.hidden),
                           target_hidden=(w, w), joint_width=w, components=self.components,
                           proposal_hidden=(self.hidden[-1],))

    def _train_config(self, **settings: Any) -> TrainConfig:
        """The engine's training settings for one model."""
        return TrainConfig(**settings)

    def _check_params(self) -> None:
        name = type(self).__name__
        if self._method() not in self._methods:
            raise ValueError(f"{name}: unknown method {self.method!r}; choose one of {', '.join(self._methods)}")
        try:
            torch_device(self.device)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"{name}: validation_fraction must lie in [0, 1), got {self.validation_fraction}")
        size = self.ensemble_size
        if size != "auto" and not _positive_int(size):
            raise ValueError(f"{name}: ensemble_size must be a positive integer or 'auto', got {size!r}")
        for param in ("components", "energy_width", "num_samples", "predict_samples", "epochs", "batch_size"):
            if not _positive_int(getattr(self, param)):
                raise ValueError(f"{name}: {param} must be a positive integer, got {getattr(self, param)!r}")
        hidden = self.hidden
        if not (isinstance(hidden, (tuple, list)) and hidden and all(_positive_int(w) for w in hidden)):
            raise ValueError(f"{name}: hidden must be a non-empty tuple of positive integers, got {hidden!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise ValueError(f"{name}: lr must be a positive number, got {self.lr!r}")
        if self.patience is not None and not _positive_int(self.patience):
            raise ValueError(f"{name}: patience must be a positive integer or None, got {self.patience!r}")
        try:
            target_transform(self.target_transform, self.target_bounds)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if self.interval_calibration not in (None, "conformal"):
            raise ValueError(f"{name}: interval_calibration must be None or 'conformal', got {self.interval_calibration!r}")
        if self.search is not None:
            self._check_search()

    def _check_search(self) -> None:
        name = type(self).__name__
        candidates = self._auto_search if isinstance(self.search, str) and self.search == "auto" else self.search
        if not (isinstance(candidates, (list, tuple)) and candidates and all(isinstance(c, dict) for c in candidates)):
            raise ValueError(f"{name}: search must be None, 'auto' or a non-empty list of dicts of parameters, "
                             f"got {self.search!r}")
        allowed = [k for k in SEARCHABLE if k in self.get_params()]
        for params in candidates:
            other = sorted(str(k) for k in params if k not in allowed)
            if other:
                raise ValueError(f"{name}: search can vary {', '.join(allowed)}; not {', '.join(other)}")
            try:
                self._with(params)._check_params()
            except ValueError as err:
                raise ValueError(f"{name}: search candidate {params!r}: {str(err).removeprefix(name + ': ')}") from None
        if self.validation_fraction == 0:
            raise ValueError(f"{name}: search compares validation NLLs; it needs validation_fraction > 0")

    def _with(self, params: dict[str, Any]) -> _ProbabilisticRegressor:
        """An unfitted copy of this estimator with ``params`` set and no search."""
        return clone(self).set_params(search=None, **params)

    def _ensemble_size(self, n: int) -> int:
        """The number of models to train on ``n`` rows."""
        if self.ensemble_size == "auto":
            return AUTO_ENSEMBLE_SIZE if n < AUTO_ENSEMBLE_ROWS else 1
        return int(self.ensemble_size)

    def _torch_device(self) -> torch.device:
        return torch_device(self.device)

    def _split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Training and validation row indices; no validation part when it would be empty
        or leave fewer than 2 training rows."""
        n_val = int(math.floor(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 2:
            return np.arange(n), None
        order = np.random.RandomState(seed).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> _ProbabilisticRegressor:
        """Train on ``X`` ``(n, d)`` and ``y`` ``(n,)`` or ``(n, D)``; returns self.

        ``sample_weight`` ``(n,)``: non-negative row weights, honoured by every loss term, the
        standardisation, early stopping and the temperature fit (a row of weight 2 counts as
        that row twice); None: all rows alike.

        Sets ``models_``, ``seeds_``, ``n_epochs_``, ``best_epoch_``, ``best_val_nll_`` (one per
        model), ``history_`` (per model, one dict per epoch: ``epoch``, the mean of every training
        loss term, ``ess_fraction`` for EBM methods, ``val_nll`` with a validation part),
        ``interval_scores_`` (conformal scores, or None), ``search_results_`` (with ``search``: one
        ``{"params", "val_nll", "chosen"}`` per candidate; else None) and ``best_params_`` (the
        chosen candidate's parameters; ``{}`` without ``search``).
        """
        self._check_params()
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        name = type(self).__name__
        if X.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples to fit, got {X.shape[0]} sample")
        weight = None
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not weight.any():
                raise ValueError(f"{name}: sample_weight is zero for every row; there is nothing to learn from")
        Y = y.reshape(len(y), -1)
        constant = [j for j in range(Y.shape[1]) if np.ptp(Y[:, j]) == 0]
        if constant:
            raise ValueError(f"{name}: target column(s) {constant} are constant; there is no distribution to learn")
        transform = target_transform(self.target_transform, self.target_bounds)
        if transform is not None:
            if Y.shape[1] != 1:
                raise ValueError(f"{name}: target_transform needs one target column, got {Y.shape[1]}")
            outside = np.flatnonzero(~transform.inside(Y[:, 0]))
            if len(outside):
                raise ValueError(f"{name}: target_transform={self.target_transform!r} needs {transform.support()}; "
                                 f"row {outside[0]} has y = {Y[outside[0], 0]:g} ({len(outside)} rows outside)")
            Y = transform.forward(torch.as_tensor(Y)).numpy()
        _check_float32_range(name, "feature", X)
        _check_float32_range(name, "target", Y)
        _warn_on_repeated_targets(name, Y)
        rng = check_random_state(self.random_state)
        seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(self._ensemble_size(len(X)))]
        calibration = None
        if self.interval_calibration == "conformal":  # rows no model trains on, for the conformal scores
            calibration, kept = self._conformal_split(len(X), seeds[0])
            X_all, y_all = X, y
            X, Y = X[kept], Y[kept]
            weight = None if weight is None else weight[kept]
        tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (X, Y)]
        tensors.append(None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        start = time.perf_counter()
        fitter, results, self.search_results_ = self, [], None
        if self.search is not None:
            fitter, first, self.search_results_ = self._search(X.shape[1], Y.shape[1], tensors, seeds)
            results.append(first)
        model_cfg = fitter._model_config(X.shape[1], Y.shape[1])
        results += [fitter._fit_model(model_cfg, *tensors, seed, len(seeds), f"member {i}/{len(seeds)}" * (len(seeds) > 1))
                    for i, seed in enumerate(seeds[len(results):], len(results) + 1)]
        self.best_params_ = next((row["params"] for row in self.search_results_ or () if row["chosen"]), {})
        self.models_ = [model for model, _ in results]
        self.model_config_ = model_cfg
        self.squeeze_ = y.ndim == 1
        self.seeds_ = seeds
        self.n_epochs_ = [r.module.current_epoch for _, r in results]
        self.best_epoch_ = [r.best_epoch for _, r in results]
        self.best_val_nll_ = [r.best_val_nll for _, r in results]
        self.history_ = [r.module.history for _, r in results]
        self.train_seconds_ = time.perf_counter() - start
        self.interval_scores_ = None
        if calibration is not None:
            self.calibrate_intervals(X_all[calibration], y_all[calibration])
        return self

    def _search(self, input_dim: int, target_dim: int, tensors: list[torch.Tensor | None], seeds: list[int]
                ) -> tuple[_ProbabilisticRegressor, tuple[Any, Any], list[dict[str, Any]]]:
        """Train one model per ``search`` candidate on the first model's training and validation
        rows (seed ``seeds[0]``); returns the candidate with the lowest validation NLL (an
        unfitted estimator with its settings), its trained model (the first of the ensemble)
        and one ``{"params", "val_nll", "chosen"}`` row per candidate."""
        if self._split(len(tensors[0]), seeds[0])[1] is None:
            raise ValueError(f"{type(self).__name__}: search compares validation NLLs; {len(tensors[0])} rows leave "
                             f"no validation part at validation_fraction={self.validation_fraction}")
        candidates = self._auto_search if isinstance(self.search, str) else self.search
        table, best = [], None
        for i, params in enumerate(candidates, 1):
            candidate = self._with(params)
            fitted = candidate._fit_model(candidate._model_config(input_dim, target_dim), *tensors, seeds[0],
                                          len(seeds), f"candidate {i}/{len(candidates)}")
            val_nll = fitted[1].best_val_nll
            if val_nll is None:  # no early stopping: the model kept is the last epoch's
                val_nll = fitted[1].module.history[-1]["val_nll"]
            table.append({"params": dict(params), "val_nll": val_nll, "chosen": False})
            score = math.inf if val_nll is None or not math.isfinite(val_nll) else val_nll
            if best is None or score < best[0]:
                best = (score, candidate, fitted, table[-1])
        best[3]["chosen"] = True
        return best[1], best[2], table

    def _conformal_split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Calibration rows (``validation_fraction`` of them, at least 1) and the rows left to train on."""
        n_cal = max(1, int(math.floor(self.validation_fraction * n)))
        if n - n_cal < 2:
            raise ValueError(f"{type(self).__name__}: interval_calibration='conformal' needs more than {n} rows")
        order = np.random.RandomState(seed + 1).permutation(n)
        return np.sort(order[:n_cal]), np.sort(order[n_cal:])

    def calibrate_intervals(self, X: Any, y: Any) -> _ProbabilisticRegressor:
        """Split-conformal calibration of :meth:`predict_interval` on rows no model was trained on.

        Keeps the scores ``|F(y_i|x_i) - 1/2|`` (F: the predictive CDF) of these rows; an
        interval of coverage c is then ``[F^-1(1/2 - s), F^-1(1/2 + s)]`` with s the
        ``ceil((n + 1) c)``-th smallest score (conformalised distributional regression: the
        predictive's own quantiles, widened or narrowed in probability). If the rows and the
        later ones are exchangeable, the interval covers with probability at least c, whatever
        the model. Every row counts alike, also after a weighted fit. Returns self.
        """
        dist = self.predict_dist(X)
        if dist.target_dim != 1 or not self.squeeze_:
            raise ValueError("conformal intervals need an estimator fitted on a one-dimensional y of shape (n,)")
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(dist),) or not np.isfinite(y).all():
            raise ValueError(f"y must be finite, shape ({len(dist)},), got {y.shape}")
        self.interval_scores_ = np.sort(np.abs(dist.cdf(y) - 0.5)).tolist()
        return self

    def _conformal_halfwidth(self, coverage: float) -> float:
        """The ``ceil((n + 1) c)``-th smallest score; 1/2 (the whole support) when n is too small."""
        scores = self.interval_scores_
        rank = math.ceil((len(scores) + 1) * coverage - 1e-9)
        return 0.5 if rank > len(scores) else scores[rank - 1]

    def _fit_model(self, model_cfg: ModelConfig, X: torch.Tensor, Y: torch.Tensor, W: torch.Tensor | None, seed: int,
                   ensemble_size: int, label: str = "") -> tuple[Any, Any]:
        """Train one model of ``ensemble_size`` from ``seed`` (its validation part and initial
        weights) on ``X`` ``(n, d)``, ``Y`` ``(n, D)`` with row weights ``W`` ``(n,)`` or None;
        returns the model and the engine's ``FitResult``."""
        from .engine import fit as train

        train_rows, val_rows = self._split(len(X), seed)
        x_val = y_val = w_val = None
        if val_rows is not None:
            x_val, y_val = X[val_rows], Y[val_rows]
            w_val = None if W is None else W[val_rows]
        train_cfg = self._train_config(
            method=self._method(), epochs=self.epochs, batch_size=min(self.batch_size, len(train_rows)),
            lr=self.lr, num_samples=self.num_samples, patience=self.patience if val_rows is not None else None,
            seed=seed,
        )
        device = self._torch_device()
        result = train(model_cfg, train_cfg, X[train_rows], Y[train_rows], x_val, y_val, progress=self.verbose,
                       label=label, log_dir=self._member_log_dir(label),
                       sample_weight=None if W is None else W[train_rows], val_weight=w_val,
                       accelerator=device.type if device.type != "cuda" else "gpu",
                       devices=[device.index or 0] if device.type == "cuda" else 1)
        module = result.module.to(device)
        model = module.test_model()
        model.requires_grad_(False)
        if x_val is not None:
            self._calibrate(model, x_val.to(device), y_val.to(device), None if w_val is None else w_val.to(device), seed,
                            ensemble_size)
        return model, result

    def _member_log_dir(self, label: str) -> Path | None:
        """Where one model's learning curves go: ``log_dir``, or ``log_dir/member<i>`` in an ensemble."""
        if self.log_dir is None:
            return None
        return Path(self.log_dir) / label.split("/")[0].replace(" ", "") if label else Path(self.log_dir)

    def _calibrate(self, model: Any, x_val: torch.Tensor, y_val: torch.Tensor, w_val: torch.Tensor | None, seed: int,
                   ensemble_size: int) -> None:
        """Adjust a fitted model of an ensemble of ``ensemble_size`` on its validation part
        (nothing by default)."""

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None,
             table: dict[str, Any] | None = None, card: dict[str, Any] | None = None) -> Path:
        """Write this fitted estimator to model folder ``path`` (see :mod:`ebreg.model_file`).

        ``metrics``: JSON-able numbers to keep with the model; ``table``: the column mapping of
        the command line's ``TableSpec`` when the model was trained from a table; ``card``: a
        JSON-able description for people (data, date, command). Replaces an existing model
        folder (or an empty folder) atomically; refuses any other existing path.
        """
        check_is_fitted(self)
        params = {k: None if isinstance(v, np.random.RandomState) else list(v) if isinstance(v, tuple) else v
                  for k, v in self.get_params().items()}  # a generator's state is not worth keeping
        meta = {
            "estimator": type(self).__name__,
            "params": params,
            "model_config": self.model_config_.to_dict(),
            "fitted": {**{k: getattr(self, k) for k in model_file.FITTED},
                       **{k: getattr(self, k, None) for k in ("interval_scores_", "search_results_", "best_params_")}},
            "feature_names": [str(f) for f in getattr(self, "feature_names_in_", [])] or None,
            "metrics": metrics or {},
            "table": table,
            "card": card or {},
        }
        return model_file.write(path, torch.nn.ModuleList(self.models_).state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> _ProbabilisticRegressor:
        """The estimator saved in model folder ``path`` (:meth:`save`) on ``device`` (default: the one
        it was fitted for); refuses another class's."""
        estimator = load(path, device)
        if not isinstance(estimator, cls):
            raise TypeError(f"{path} holds a {type(estimator).__name__}, not a {cls.__name__}")
        return estimator

    def _network(self, config: ModelConfig) -> torch.nn.Module:
        """An untrained network of this estimator's kind, to load weights into."""
        raise NotImplementedError

    def _x(self, X: Any) -> torch.Tensor:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32, device=self._torch_device())

    def predict_dist(self, X: Any) -> PredictiveDistribution:
        """The predictive distribution of every row of ``X``: batch shape ``(n,)``, event shape
        ``()`` or ``(D,)`` like the ``y`` given to ``fit`` (see :mod:`ebreg.predictive`), in the
        original units of ``y`` (through ``target_transform`` where one is set)."""
        dist = self._predict_dist(self._x(X))
        transform = target_transform(self.target_transform, self.target_bounds)
        return dist if transform is None else TransformedPredictive(dist, transform)

    def _predict_dist(self, x: torch.Tensor) -> PredictiveDistribution:
        """The models' own predictive distribution of the rows ``x``."""
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Predictive mean, ``(n,)`` or ``(n, D)`` like the ``y`` given to ``fit``."""
        return self.predict_dist(X).mean()

    def predict_interval(self, X: Any, coverage: float = 0.9) -> Any:
        """The central interval holding ``coverage`` of each row's predictive mass (one target);
        after :meth:`calibrate_intervals` (or with ``interval_calibration="conformal"``), the
        conformal interval of that coverage.

        Returns ``(n, 2)`` (lower, upper), or a pandas DataFrame with columns ``lower`` and
        ``upper`` indexed like ``X`` when ``X`` is a DataFrame.
        """
        dist = self.predict_dist(X)
        if getattr(self, "interval_scores_", None):
            half = self._conformal_halfwidth(check_level(coverage, "coverage"))
            if half < 0.5:
                low, high = dist.ppf([[0.5 - half], [0.5 + half]])
            else:  # too few calibration rows for this coverage: the whole line
                low, high = np.full(len(dist), -np.inf), np.full(len(dist), np.inf)
        else:
            low, high = dist.interval(coverage)
        return _like_rows(X, np.stack([low, high], 1), ["lower", "upper"])

    def predict_quantiles(self, X: Any, alpha: float | list[float] = (0.1, 0.5, 0.9)) -> Any:
        """The predictive quantiles at levels ``alpha`` of each row (one target).

        Returns ``(n, len(alpha))``, or a pandas DataFrame with one column per level indexed like
        ``X`` when ``X`` is a DataFrame.
        """
        levels = [float(a) for a in np.atleast_1d(alpha)]
        dist = self.predict_dist(X)
        return _like_rows(X, dist.ppf(np.reshape(levels, (-1, 1))).T, levels)

    def log_likelihood(self, X: Any, y: Any) -> np.ndarray:
        """``log p(y_i | x_i)`` per row ``(n,)`` in original units."""
        dist = self.predict_dist(X)
        n = len(dist)
        y = np.asarray(y, dtype=np.float64)
        if y.shape[:1] != (n,) or not np.isfinite(y).all():
            raise ValueError(f"y must be finite with one row per row of X ({n}), got shape {y.shape}")
        return dist.logpdf(y)


class EBMRegressor(_ProbabilisticRegressor):
    """Conditional EBM ``p(y|x) ∝ exp f(x, y)`` trained jointly with a mixture-density proposal.

    Args:
        method: ``"joint_nce"`` (NCE, the paper's variant B; the default, None) or
            ``"joint_mlis"`` (variant A).
        components: mixture components K of the proposal.
        hidden: widths of the feature network's layers.
        energy_width: width of the energy head (its target network and joint layers).
        num_samples: proposal samples M per example in training.
        predict_samples: proposal samples M per row at prediction (SNIS).
        epochs, batch_size, lr: the optimiser's budget (Adam, warm-up then cosine decay).
        validation_fraction: share of the training rows held out for early stopping
            (0: none, train all epochs).
        patience: epochs without a better validation NLL before stopping.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA, else MPS, else
            the CPU); one that is absent here is refused when fitting.
        random_state: seed (int), ``RandomState`` or None.
        log_dir: a folder for learning curves (CSV, and TensorBoard's when installed): every loss
            term, the proposal samples' effective sample size and the validation NLL per epoch;
            in an ensemble one subfolder per model (``member1``, ...). None: no curves.
        verbose: report progress on standard error: a bar per model on a terminal (``member 2/5``
            for an ensemble), else one line per epoch.
        calibrate: after training, fit a temperature T, ``p(y|x) ∝ exp(f(x, y) / T)``, by the
            log-likelihood of the validation part (:mod:`ebreg.calibration`; ``temperatures_``,
            one per model): True for every model, False for none, ``"auto"`` for a single EBM
            only (an ensemble's mixture is already wider than its members; calibrating each
            member made it too wide on the UCI data, ``docs/methods.md``). Without a
            validation part T stays 1.
        ensemble_size: number of EBMs E, each trained from its own seed and validation part;
            predictions use their equal-weight mixture (E * ``predict_samples`` samples per
            row). ``"auto"``: :data:`AUTO_ENSEMBLE_SIZE` when the training data have fewer than
            :data:`AUTO_ENSEMBLE_ROWS` rows, else 1.
        refine_mdn: instead of the paper's joint training, train the proposal as a plain MDN
            (by its NLL, from the initial weights ``MDNRegressor`` would have with the same
            seed) and the EBM as a learned correction of it, ``f(x, y) = g(x, y) + sg[log q(y|x)]``
            with g trained by NCE and starting at zero (``docs/methods.md``). Needs
            ``method="joint_nce"`` (the default).
        target_transform: ``"log"`` for targets ``y > 0`` (prices, counts of time), ``"logit"`` for
            targets between ``target_bounds`` (proportions; default (0, 1)): the models learn the
            transformed target and every prediction (densities with the Jacobian, so NLLs are in
            original units; quantiles, intervals, draws) stays on the support. None: y as is.
        target_bounds: ``(low, high)`` for ``target_transform="logit"``.
        interval_calibration: ``"conformal"``: hold out ``validation_fraction`` of the rows from
            every model and calibrate :meth:`predict_interval` on them
            (:meth:`calibrate_intervals`: coverage at least the nominal level, in finite samples,
            for exchangeable rows). None: intervals are the predictive's own.
        search: choose settings on the validation part: a list of candidates, each a dict of
            parameters to change (any of :data:`SEARCHABLE`; ``{}``: the estimator's own), or
            ``"auto"`` for the estimator's own settings and networks twice as wide
            (``hidden=(128, 128), energy_width=64``; about 2.5 times a default model's fit).
            Each candidate trains one model on the first model's training and validation rows;
            the one with the lowest validation NLL is kept as the first model and sets the
            settings of the others (E models cost E - 1 + the number of candidates fits).
            ``search_results_`` and ``best_params_`` tell what was chosen. None: no search.
    """

    _methods = get_args(JointMethod)
    _auto_search = ({}, {"hidden": (128, 128), "energy_width": 64})

    def __init__(
        self,
        method: str | None = None,
        components: int = 4,
        hidden: tuple[int, ...] = (64, 64),
        energy_width: int = 32,
        num_samples: int = 256,
        predict_samples: int = 1024,
        epochs: int = 150,
        batch_size: int = 64,
        lr: float = 3e-3,
        validation_fraction: float = 0.1,
        patience: int | None = 20,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
        ensemble_size: int | str = "auto",
        calibrate: bool | str = "auto",
        refine_mdn: bool = False,
        log_dir: str | None = None,
        target_transform: str | None = None,
        target_bounds: tuple[float, float] | None = None,
        interval_calibration: str | None = None,
        search: str | list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(method, components, hidden, energy_width, num_samples, predict_samples, epochs,
                         batch_size, lr, validation_fraction, patience, device, random_state, verbose,
                         ensemble_size, log_dir, target_transform, target_bounds, interval_calibration, search)
        self.calibrate = calibrate
        self.refine_mdn = refine_mdn

    def _check_params(self) -> None:
        super()._check_params()
        if self.calibrate not in (True, False, "auto"):
            raise ValueError(f"EBMRegressor: calibrate must be True, False or 'auto', got {self.calibrate!r}")
        if self.refine_mdn not in (True, False):
            raise ValueError(f"EBMRegressor: refine_mdn must be True or False, got {self.refine_mdn!r}")
        if self.refine_mdn and self._method() != "joint_nce":
            raise ValueError(f"EBMRegressor: refine_mdn needs method='joint_nce', got {self.method!r}")

    def _model_config(self, input_dim: int, target_dim: int) -> ModelConfig:
        config = super()._model_config(input_dim, target_dim)
        if not self.refine_mdn:
            return config
        return replace(config, **REFINE_MDN_MODEL)

    def _train_config(self, **settings: Any) -> TrainConfig:
        if self.refine_mdn:
            settings.update(REFINE_MDN_TRAIN)
        return super()._train_config(**settings)

    def _calibrate(self, model: Any, x_val: torch.Tensor, y_val: torch.Tensor, w_val: torch.Tensor | None, seed: int,
                   ensemble_size: int) -> None:
        auto = isinstance(self.calibrate, str)
        if (auto and ensemble_size == 1) or (not auto and self.calibrate):
            gen = torch.Generator(device=x_val.device).manual_seed(seed)
            model.temperature.fill_(fit_temperature(model, x_val, y_val, self.predict_samples, gen, weight=w_val))

    def _network(self, config: ModelConfig) -> torch.nn.Module:
        return ConditionalEBM.from_config(config, with_proposal=True)

    @property
    def temperatures_(self) -> list[float]:
        """Each fitted model's temperature T (1: not calibrated)."""
        check_is_fitted(self)
        return [float(m.temperature) for m in self.models_]

    def _predict_dist(self, x: torch.Tensor) -> SNISPredictive:
        """SNIS predictions with the learned proposals (M = ``predict_samples`` per model,
        common noise)."""
        return SNISPredictive(self.models_, x, self.predict_samples, self.seeds_[0], self.squeeze_)


class MDNRegressor(_ProbabilisticRegressor):
    """Mixture density network ``q(y|x) = sum_k pi_k N(y; mu_k, sigma_k^2)`` with an exact density.

    Args:
        method: ``"mdn"`` (maximum likelihood; the default, None) or ``"mdn_teacher"`` (trained towards an EBM
            teacher learned alongside; ``num_samples`` and ``energy_width`` apply to it).
        ensemble_size: number of MDNs, predicting with their equal-weight mixture (default 1:
            the plain MDN; ``"auto"`` as :class:`EBMRegressor`).
        search: as :class:`EBMRegressor`; ``"auto"`` compares the MDN's own settings with
            8 components and with 128-wide networks (three MDN fits).
        Other arguments as :class:`EBMRegressor`.
    """

    _methods = get_args(MDNMethod)
    _auto_search = ({}, {"components": 8}, {"hidden": (128, 128)})

    def _network(self, config: ModelConfig) -> torch.nn.Module:
        return MixtureDensityNetwork.from_config(config)

    def _predict_dist(self, x: torch.Tensor) -> MixturePredictive:
        """The exact mixture of every row (of every model's mixture, for an ensemble)."""
        with torch.no_grad():
            return MixturePredictive(pool_mixtures([model(x) for model in self.models_]), self.squeeze_)


def _lists_as_tuples(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters read from JSON, with their lists (``hidden``, ``target_bounds``) as tuples again."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def load(path: str | Path, device: str | None = None) -> EBMRegressor | MDNRegressor:
    """The fitted estimator saved in model folder ``path`` (by :meth:`EBMRegressor.save` or
    :meth:`MDNRegressor.save`), of the class it was saved from, on ``device`` (default: the one it
    was fitted for; see the estimators' ``device``)."""
    meta, state = model_file.read(path)
    meta_file = Path(path) / "model.json"
    classes = {"EBMRegressor": EBMRegressor, "MDNRegressor": MDNRegressor}
    try:
        cls = classes[meta["estimator"]]
        config = ModelConfig.from_dict(meta["model_config"])
        estimator = cls(**_lists_as_tuples(meta["params"]))
        if device is not None:
            estimator.set_params(device=device)
        fitted = {k: meta["fitted"][k] for k in model_file.FITTED}
        count = len(fitted["seeds_"])
        if {key.split(".", 1)[0] for key in state} != {str(i) for i in range(count)}:
            raise ValueError(f"{count} models named in model.json, other ones in the weights")
        with torch.device("meta"):  # shapes only: nothing the description asks for is allocated yet
            model_file.load_weights(torch.nn.ModuleList(estimator._network(config) for _ in range(count)), state,
                                    path, check_only=True)
    except model_file.ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError, IndexError, ZeroDivisionError,
            AssertionError, RuntimeError) as err:
        raise model_file.ModelFileError(f"{meta_file} is incomplete or invalid: {err!r}") from err
    device = estimator._torch_device()  # refused in one line where it is absent here
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise model_file.ModelFileError(f"{Path(path) / model_file.WEIGHTS} holds NaN or infinite weights")
    models = torch.nn.ModuleList(estimator._network(config) for _ in range(count))
    model_file.load_weights(models, state, path)
    models.eval().requires_grad_(False)
    estimator.models_ = list(models.to(device))
    estimator.model_config_ = config
    for key, value in fitted.items():
        setattr(estimator, key, value)
    scores = meta["fitted"].get("interval_scores_")
    if scores is not None and not (isinstance(scores, list) and all(isinstance(v, (int, float)) and 0 <= v <= 0.5
                                                                     for v in scores)):
        raise model_file.ModelFileError(f"{meta_file}: interval_scores_ must be a list of numbers in [0, 0.5]")
    estimator.interval_scores_ = scores
    searched, chosen = meta["fitted"].get("search_results_"), meta["fitted"].get("best_params_") or {}
    if not (isinstance(chosen, dict) and (searched is None or isinstance(searched, list) and all(
            isinstance(row, dict) and isinstance(row.get("params"), dict) for row in searched))):
        raise model_file.ModelFileError(f"{meta_file}: best_params_ must be a dict and search_results_ a list of "
                                        f"{{params, val_nll, chosen}}")
    estimator.search_results_ = searched and [{**row, "params": _lists_as_tuples(row["params"])} for row in searched]
    estimator.best_params_ = _lists_as_tuples(chosen)
    if meta.get("feature_names"):
        estimator.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    estimator.metrics_ = meta.get("metrics", {})
    estimator.card_ = meta.get("card", {})
    estimator.table_ = meta.get("table")
    return estimator

