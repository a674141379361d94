"""skpro interop (optional extra ``skpro``): ebreg's estimators as skpro probabilistic
regressors, their predictions as skpro distributions, so that skpro's metrics, model
selection and benchmarking take them unchanged.

    from ebreg.skpro_adapter import SkproRegressor
    reg = SkproRegressor(EBMRegressor()).fit(X_frame, y_frame)
    dist = reg.predict_proba(X_test_frame)  # skpro Empirical (EBMs) or NormalMixture (MDNs)

MDNs give skpro's ``NormalMixture`` (exact); EBMs, and MDNs with a ``target_transform``, give a
weighted ``Empirical``: an EBM's self-normalised importance samples with their weights (a
transformed MDN: :data:`DRAWS` draws). skpro's own CRPS of a ``NormalMixture`` is not exact
(``docs/protocols.md``); ebreg's ``predict_dist(X).crps(y)`` is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from skpro.distributions import Empirical, NormalMixture
from skpro.regression.base import BaseProbaRegressor

from .predictive import MixturePredictive, PredictiveDistribution, SNISPredictive, TransformedPredictive

__all__ = ["SkproRegressor", "to_skpro", "DRAWS"]

#: draws behind the empirical distribution of a transformed mixture
DRAWS = 1000


def to_skpro(dist: PredictiveDistribution, index: pd.Index, columns: pd.Index) -> Any:
    """An skpro distribution of ``dist``'s rows (batch shape ``(n,)``), rows ``index``, targets
    ``columns``."""
    if isinstance(dist, MixturePredictive):
        m = dist.mixture
        return NormalMixture(pi=m.mixture_distribution.probs.numpy(), mu=m.loc.numpy(), sigma=m.scale.numpy(),
                             index=index, columns=columns)
    if isinstance(dist, SNISPredictive) or (isinstance(dist, TransformedPredictive) and
                                            isinstance(dist.base, SNISPredictive)):
        snis = dist if isinstance(dist, SNISPredictive) else dist.base
        packed = snis._map(lambda w, _: torch.cat([w.samples.permute(1, 0, 2),
                                                                w.weights().T.unsqueeze(-1)], -1))  # (n, S, D + 1)
        values, weights = packed[..., :-1].double().numpy(), packed[..., -1].double().numpy()
        if isinstance(dist, TransformedPredictive):
            values = dist.transform.inverse(torch.as_tensor(values)).numpy()
        return _empirical(values, weights, index, columns)
    draws = dist.sample(DRAWS, random_state=0).reshape(DRAWS, len(dist), -1).transpose(1, 0, 2)  # (n, S, D)
    return _empirical(draws, np.full(draws.shape[:2], 1 / DRAWS), index, columns)


def _empirical(values: np.ndarray, weights: np.ndarray, index: pd.Index, columns: pd.Index) -> Empirical:
    """``values`` ``(n, S, D)`` with ``weights`` ``(n, S)`` as skpro's Empirical (sample-major)."""
    n, s, d = values.shape
    frame_index = pd.MultiIndex.from_product([range(s), index], names=["sample", None])
    samples = pd.DataFrame(values.transpose(1, 0, 2).reshape(s * n, d), index=frame_index, columns=columns)
    return Empirical(samples, weights=pd.Series(weights.T.reshape(-1), index=frame_index), index=index, columns=columns)


class SkproRegressor(BaseProbaRegressor):
    """An ebreg estimator (``EBMRegressor`` or ``MDNRegressor``, unfitted) as an skpro
    probabilistic regressor; ``predict_proba`` returns :func:`to_skpro` of its predictive."""

    _tags = {"capability:multioutput": True, "capability:missing": False}

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        super().__init__()

    def _fit(self, X: pd.DataFrame, y: pd.DataFrame) -> SkproRegressor:
        from sklearn.base import clone

        self._columns = y.columns
        target = y.to_numpy(dtype=np.float64)
        self.estimator_ = clone(self.estimator).fit(X.to_numpy(dtype=np.float64),
                                                    target[:, 0] if target.shape[1] == 1 else target)
        return self

    def _predict_proba(self, X: pd.DataFrame) -> Any:
        return to_skpro(self.estimator_.predict_dist(X.to_numpy(dtype=np.float64)), X.index, self._columns)

    def _predict(self, X: pd.DataFrame) -> pd.DataFrame:
        mean = self.estimator_.predict(X.to_numpy(dtype=np.float64)).reshape(len(X), -1)
        return pd.DataFrame(mean, index=X.index, columns=self._columns)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict[str, Any]]:
        """Small estimators for skpro's contract checks."""
        from .estimators import EBMRegressor, MDNRegressor

        small = {"hidden": (8,), "epochs": 2, "num_samples": 16, "predict_samples": 32, "ensemble_size": 1}
        return [{"estimator": MDNRegressor(**small)}, {"estimator": EBMRegressor(**small, energy_width=8)}]
