"""Model folders: weights as safetensors, everything else as JSON; nothing is ever unpickled.

A model folder holds ``weights.safetensors`` (the networks' state dicts, standardisation
included; the keys of model e of an ensemble start with ``"e."``) and ``model.json``: the
format and library versions, the estimator's class and parameters, the network
configuration, fitted attributes (feature names, shapes), the weights' SHA-256 and
optional user metrics. Saving is atomic (see
:func:`ebreg.io.atomic_folder`); loading checks the format version, the checksum and every
tensor's name and shape before building the estimator.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .ebm import ConditionalEBM
from .io import atomic_folder, write_json
from .mdn import MixtureDensityNetwork

__all__ = ["ModelFileError", "save", "load", "FORMAT_VERSION"]

FORMAT = "ebreg-model"
#: bump when a model folder written now could not be read by an older ebreg
#: (2: ensembles; version-1 folders hold one model, its keys unprefixed, and still load)
FORMAT_VERSION = 2
WEIGHTS = "weights.safetensors"
META = "model.json"
_FITTED = ("n_features_in_", "squeeze_", "seeds_", "n_epochs_", "best_epoch_", "best_val_nll_", "train_seconds_")
#: fitted attributes that version 1 held as one value and version 2 as one per model
_PER_MODEL_V1 = {"seed_": "seeds_", "n_epochs_": "n_epochs_", "best_epoch_": "best_epoch_",
                 "best_val_nll_": "best_val_nll_"}


class ModelFileError(ValueError):
    """A model folder is missing, damaged, tampered with, or from a newer ebreg."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if isinstance(value, np.random.RandomState):
            value = None  # a generator's state is not a parameter worth keeping
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _is_model_folder(path: Path) -> bool:
    return (path / META).exists() or not any(path.iterdir())


def save(estimator: Any, path: str | Path, metrics: dict[str, Any] | None = None,
         table: dict[str, Any] | None = None) -> Path:
    """Write a fitted :class:`~ebreg.estimators.EBMRegressor` / ``MDNRegressor`` to folder ``path``.

    ``metrics``: JSON-able numbers to keep with the model; ``table``: the column mapping of
    :class:`ebreg.tables.TableSpec` when the model was trained from a table. Replaces an existing model folder (or an empty folder) atomically; refuses any other
    existing path.
    """
    from . import __version__

    models = torch.nn.ModuleList(estimator.models_)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ebreg_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "estimator": type(estimator).__name__,
        "params": _json_params(estimator.get_params()),
        "model_config": estimator.model_config_.to_dict(),
        "fitted": {k: getattr(estimator, k) for k in _FITTED},
        "feature_names": [str(f) for f in getattr(estimator, "feature_names_in_", [])] or None,
        "metrics": metrics or {},
        "table": table,
    }

    def write(folder: Path) -> None:
        state = {k: v.detach().to("cpu").contiguous() for k, v in models.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        meta["weights_sha256"] = _sha256(folder / WEIGHTS)
        write_json(folder / META, meta)

    return atomic_folder(path, write, _is_model_folder)


def _read_meta(folder: Path) -> dict[str, Any]:
    from . import __version__

    if not folder.is_dir():
        raise ModelFileError(f"no model folder at {folder}")
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise ModelFileError(f"{folder} is not an ebreg model folder: it needs {META} and {WEIGHTS}")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{folder / META} is not valid JSON ({err}); the model folder is damaged") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{folder / META} is not an ebreg model description")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{folder} was written by a newer ebreg ({meta.get('ebreg_version')}, model format {version}); "
            f"this is ebreg {__version__} (format {FORMAT_VERSION}): upgrade ebreg to load it")
    return meta


def _upgrade_v1(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read a version-1 folder's one model as an ensemble of one (in place for ``meta``)."""
    fitted = meta["fitted"]
    for old, new in _PER_MODEL_V1.items():
        fitted[new] = [fitted.pop(old)]
    meta["params"]["ensemble_size"] = 1
    if meta["estimator"] == "EBMRegressor":  # saved before temperature calibration: T = 1
        state.setdefault("temperature", torch.ones(()))
    return {f"0.{k}": v for k, v in state.items()}


def _network(ebm: bool, config: ModelConfig) -> torch.nn.Module:
    """An untrained network of the estimator's kind, to load weights into."""
    if ebm:
        return ConditionalEBM.from_config(config, with_proposal=True)
    return MixtureDensityNetwork.from_config(config)


def load(path: str | Path) -> Any:
    """Load a model folder written by :func:`save`; returns the fitted estimator."""
    from .estimators import EBMRegressor, MDNRegressor

    folder = Path(path)
    meta = _read_meta(folder)
    classes = {"EBMRegressor": EBMRegressor, "MDNRegressor": MDNRegressor}
    if _sha256(folder / WEIGHTS) != meta.get("weights_sha256"):
        raise ModelFileError(f"{folder / WEIGHTS} does not match the checksum in {META}: "
                             f"the file was changed or truncated")
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"{folder / WEIGHTS} cannot be read: {err}") from err
    try:
        if meta["format_version"] == 1:
            state = _upgrade_v1(meta, state)
        cls = classes[meta["estimator"]]
        config = ModelConfig.from_dict(meta["model_config"])
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        estimator = cls(**params)
        fitted = {k: meta["fitted"][k] for k in _FITTED}
        count = len(fitted["seeds_"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{folder / META} is incomplete or invalid: {err!r}") from err
    models = torch.nn.ModuleList(_network(cls is EBMRegressor, config) for _ in range(count))
    wanted = {k: tuple(v.shape) for k, v in models.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if wanted != found:
        diff = sorted(set(wanted.items()) ^ set(found.items()))[:3]
        raise ModelFileError(f"{folder / WEIGHTS} does not fit the network in {META} (first differences: {diff})")
    models.load_state_dict(state)
    models.eval().requires_grad_(False)
    estimator.models_ = list(models.to(estimator._torch_device()))
    estimator.model_config_ = config
    for key, value in fitted.items():
        setattr(estimator, key, value)
    if meta.get("feature_names"):
        estimator.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    estimator.metrics_ = meta.get("metrics", {})
    estimator.table_ = meta.get("table")
    return estimator
