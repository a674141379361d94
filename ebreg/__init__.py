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
]

_LAZY = {"fit", "NonFiniteLossError", "FitResult", "EBMTrainer"}


def __getattr__(name: str) -> Any:
    """Import the Lightning engine only when it is used (it is slow to import)."""
    if name in _LAZY:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'ebreg' has no attribute {name!r}")
