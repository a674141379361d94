"""ebreg: probabilistic regression with energy-based models and learned proposals.

Every public name is imported on first use, so that ``import ebreg`` (and the command line's
``--help``) loads neither torch nor Lightning, scikit-learn, pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_WHERE = {
    "METHODS": "config", "ModelConfig": "config", "TrainConfig": "config",
    "ConditionalEBM": "ebm", "EnergyHead": "ebm",
    "MixtureDensityNetwork": "mdn",
    "GaussianMixture": "proposals", "FixedGaussianMixture": "proposals", "MDNHead": "proposals",
    "WeightedSamples": "inference", "importance_sample": "inference", "predict_mean": "inference",
    "log_likelihood": "inference", "sample": "inference", "refine": "inference",
    "fit": "engine", "FitResult": "engine", "EBMTrainer": "engine", "NonFiniteLossError": "engine",
    "EBMRegressor": "estimators", "MDNRegressor": "estimators", "load": "estimators",
    "ModelFileError": "model_file",
    "PredictiveDistribution": "predictive", "MixturePredictive": "predictive", "SNISPredictive": "predictive",
    "fast_paths": "_fast", "set_fast_paths": "_fast", "FastPaths": "_fast",
}

__all__ = list(_WHERE)

if TYPE_CHECKING:
    from ._fast import FastPaths, fast_paths, set_fast_paths
    from .config import METHODS, ModelConfig, TrainConfig
    from .ebm import ConditionalEBM, EnergyHead
    from .engine import EBMTrainer, FitResult, NonFiniteLossError, fit
    from .estimators import EBMRegressor, MDNRegressor, load
    from .inference import WeightedSamples, importance_sample, log_likelihood, predict_mean, refine, sample
    from .mdn import MixtureDensityNetwork
    from .model_file import ModelFileError
    from .predictive import MixturePredictive, PredictiveDistribution, SNISPredictive
    from .proposals import FixedGaussianMixture, GaussianMixture, MDNHead


#: submodules reachable as attributes of ``ebreg`` without importing them first
_SUBMODULES = ("scorers",)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # the next look-up is a plain attribute
        return value
    raise AttributeError(f"module 'ebreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
