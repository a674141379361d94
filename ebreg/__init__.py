"""ebreg: probabilistic regression with energy-based models and learned proposals."""

from __future__ import annotations

from typing import Any

from .config import METHODS, ModelConfig, TrainConfig
from .ebm import ConditionalEBM, EnergyHead
from .inference import (
    WeightedSamples,
    importance_sample,
    log_likelihood,
    predict_mean,
    refine,
    sample,
)
from .mdn import MixtureDensityNetwork
from .proposals import FixedGaussianMixture, GaussianMixture, MDNHead

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "ModelConfig",
    "TrainConfig",
    "ConditionalEBM",
    "EnergyHead",
    "MixtureDensityNetwork",
    "GaussianMixture",
    "FixedGaussianMixture",
    "MDNHead",
    "WeightedSamples",
    "importance_sample",
    "predict_mean",
    "log_likelihood",
    "sample",
    "refine",
    "fit",
    "NonFiniteLossError",
    "EBMRegressor",
    "MDNRegressor",
    "load",
    "ModelFileError",
]

_LAZY = {"fit": "engine", "NonFiniteLossError": "engine", "FitResult": "engine", "EBMTrainer": "engine",
         "EBMRegressor": "estimators", "MDNRegressor": "estimators", "load": "model_file",
         "ModelFileError": "model_file"}


def __getattr__(name: str) -> Any:
    """Import the Lightning engine, scikit-learn and safetensors only when used (slow to import)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'ebreg' has no attribute {name!r}")
