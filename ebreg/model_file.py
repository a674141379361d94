"""Model folders: weights as safetensors, everything else as JSON; nothing is ever unpickled.

A model folder holds ``weights.safetensors`` (the networks' state dicts, standardisation
included; the keys of model e of an ensemble start with ``"e."``) and ``model.json``: the
format and library versions, the estimator's class and parameters, the network
configuration, fitted attributes (feature names, shapes), the weights' SHA-256 and
optional user metrics. Writing is atomic (see
:func:`ebreg.io.atomic_folder`); reading checks the format version and the checksum, and
:func:`load_weights` every tensor's name and shape.

This module only reads and writes; the estimators build themselves from what it reads
(:meth:`ebreg.estimators.EBMRegressor.save`, :func:`ebreg.estimators.load`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .io import atomic_folder, folder_written_as, umask, write_json

if TYPE_CHECKING:  # torch and safetensors load where tensors are read or written: checking a folder needs neither
    import torch

__all__ = ["ModelFileError", "write", "read", "load_weights", "is_model_folder", "FORMAT_VERSION", "FITTED"]

FORMAT = "ebreg-model"
#: bump when a model folder written now could not be read by an older ebreg
#: (2: ensembles; version-1 folders hold one model, its keys unprefixed, and still load)
FORMAT_VERSION = 2
WEIGHTS = "weights.safetensors"
META = "model.json"
#: an estimator's fitted attributes kept in ``model.json``
FITTED = ("n_features_in_", "squeeze_", "seeds_", "n_epochs_", "best_epoch_", "best_val_nll_", "train_seconds_")
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


def _read_meta(folder: Path) -> dict[str, Any]:
    from . import __version__

    if not folder.is_dir():
        raise ModelFileError(f"no model folder at {folder}")
    if not (folder / META).exists() or not (folder / WEIGHTS).exists():
        raise ModelFileError(f"{folder} is not an ebreg model folder: it needs {META} and {WEIGHTS}")
    for name in (META, WEIGHTS):  # a link to a device or a FIFO would hang the reads below
        if (folder / name).is_symlink() or not (folder / name).is_file():
            raise ModelFileError(f"{folder / name} is not a regular file")
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
        import torch

        state.setdefault("temperature", torch.ones(()))
    return {f"0.{k}": v for k, v in state.items()}


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` (an existing folder) may be replaced by a model: empty, or an ebreg model
    folder (its ``model.json`` says so; another tool's ``model.json`` does not make it ours)."""
    return folder_written_as(path, META, FORMAT)


def write(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write the tensors ``state`` and the JSON-able description ``meta`` (to which the format,
    library versions and the weights' checksum are added) as model folder ``path``.

    Replaces an existing model folder (or an empty folder) atomically; refuses any other
    existing path.
    """
    import torch
    from safetensors.torch import save_file

    from . import __version__

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "ebreg_version": __version__,
            "torch_version": torch.__version__.split("+")[0], **meta}

    def write_into(folder: Path) -> None:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(folder / WEIGHTS))
        os.chmod(folder / WEIGHTS, 0o666 & ~umask())  # safetensors creates its files private
        meta["weights_sha256"] = _sha256(folder / WEIGHTS)
        write_json(folder / META, meta)

    return atomic_folder(path, write_into, is_model_folder)


def read(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and the tensors of model folder ``path``, checked against its checksum
    and brought to the current format (a version-1 folder reads as an ensemble of one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    meta = _read_meta(folder)
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
    except (KeyError, TypeError) as err:
        raise ModelFileError(f"{folder / META} is incomplete or invalid: {err!r}") from err
    return meta, state


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path,
                 check_only: bool = False) -> None:
    """Load ``state`` (read from model folder ``path``) into ``module`` after checking that every
    tensor's name and shape fit it (``check_only``: the check alone, as for a module built on
    the ``meta`` device, which has shapes but no memory)."""
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if wanted != found:
        diff = sorted(set(wanted.items()) ^ set(found.items()))[:3]
        raise ModelFileError(f"{Path(path) / WEIGHTS} does not fit the network in {META} (first differences: {diff})")
    if not check_only:
        module.load_state_dict(state)
