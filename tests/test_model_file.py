"""Model folders: atomic saves, and every damaged or foreign folder refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ebreg
from ebreg import model_file
from ebreg.estimators import MDNRegressor
from ebreg.model_file import ModelFileError


@pytest.fixture(scope="module")
def model() -> tuple[MDNRegressor, np.ndarray]:
    rng = np.random.RandomState(0)
    X = rng.randn(80, 2)
    return MDNRegressor(hidden=(8,), epochs=3, random_state=0).fit(X, X[:, 0] + 0.1 * rng.randn(80)), X


def test_a_crash_mid_save_keeps_the_previous_model(model, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    est, X = model
    folder = est.save(tmp_path / "m")
    before = est.predict(X)

    def crash(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise KeyboardInterrupt("killed after the weights were written")

    monkeypatch.setattr(model_file, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        est.save(folder)
    assert np.array_equal(ebreg.load(folder).predict(X), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder left


def test_save_refuses_to_replace_a_folder_that_is_not_a_model(model, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("a,b\n")
    with pytest.raises(FileExistsError, match="not a folder this would replace"):
        model[0].save(tmp_path / "data")
    assert (tmp_path / "data" / "keep.csv").exists()


def _damage(folder: Path, how: str) -> None:
    meta = json.loads((folder / "model.json").read_text())
    weights = folder / "weights.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "tampered":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "newer":
        meta["format_version"] = model_file.FORMAT_VERSION + 1
        meta["ebreg_version"] = "99.0"
        (folder / "model.json").write_text(json.dumps(meta))
    elif how == "not json":
        (folder / "model.json").write_text("{not json")
    elif how == "missing weights":
        weights.unlink()
    elif how == "wrong shapes":
        meta["model_config"]["feature_hidden"] = [9]
        (folder / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("how, message", [
    ("truncated", "changed or truncated"),
    ("tampered", "changed or truncated"),
    ("newer", rf"newer ebreg \(99.0, model format {model_file.FORMAT_VERSION + 1}\).*upgrade"),
    ("not json", "not valid JSON"),
    ("missing weights", "not an ebreg model folder"),
    ("wrong shapes", "does not fit the network"),
])
def test_damaged_folders_are_refused_by_name(model, tmp_path: Path, how: str, message: str) -> None:  # noqa: ANN001
    folder = model[0].save(tmp_path / "m")
    _damage(folder, how)
    with pytest.raises(ModelFileError, match=message):
        ebreg.load(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no model folder"):
        ebreg.load(tmp_path / "nothing")


def test_an_ensemble_round_trips(tmp_path: Path) -> None:
    rng = np.random.RandomState(0)
    X = rng.randn(80, 2)
    est = MDNRegressor(hidden=(8,), epochs=2, ensemble_size=3, random_state=0).fit(X, X[:, 0] + 0.1 * rng.randn(80))
    again = ebreg.load(est.save(tmp_path / "ensemble"))
    assert len(again.models_) == 3 and again.seeds_ == est.seeds_ and again.best_epoch_ == est.best_epoch_
    assert np.array_equal(again.predict_dist(X).logpdf(X[:, 0]), est.predict_dist(X).logpdf(X[:, 0]))


def _fitted_folder(tmp_path: Path) -> Path:
    from ebreg import MDNRegressor

    rng = np.random.RandomState(0)
    X = rng.randn(60, 2)
    est = MDNRegressor(hidden=(8,), epochs=2, random_state=0).fit(X, X[:, 0] + 0.1 * rng.randn(60))
    return est.save(tmp_path / "model")


@pytest.mark.parametrize("case", ["absurd width", "absurd model count", "non-finite weights", "overflowing value",
                                  "weights are a link to a device", "malformed search results"])
def test_hostile_model_folders_are_refused_before_anything_is_allocated(tmp_path: Path, case: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from ebreg import load

    folder = _fitted_folder(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    message = "incomplete or invalid"
    if case == "absurd width":
        meta["model_config"]["feature_hidden"] = [3_000_000_000]
        message = "does not fit the network"
    elif case == "absurd model count":
        meta["fitted"]["seeds_"] = list(range(100_000))
    elif case == "overflowing value":
        meta["model_config"]["min_scale"] = 10**400
    elif case == "malformed search results":
        meta["fitted"]["search_results_"] = [1, 2]
        message = "search_results_ a list of"
    elif case == "non-finite weights":
        state = load_file(str(folder / "weights.safetensors"))
        state[next(iter(state))][0] = float("nan")
        save_file(state, str(folder / "weights.safetensors"))
        meta["weights_sha256"] = model_file._sha256(folder / "weights.safetensors")
        message = "holds NaN or infinite weights"
    else:
        (folder / "weights.safetensors").unlink()
        (folder / "weights.safetensors").symlink_to("/dev/zero")
        message = "is not a regular file"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=message):
        load(folder)
    assert torch.get_default_device().type == "cpu"


def test_a_model_loaded_for_an_absent_device_is_refused_as_such(tmp_path: Path) -> None:
    import torch

    from ebreg import load

    folder = _fitted_folder(tmp_path)
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a CUDA device 7")
    with pytest.raises(ValueError, match="device 'cuda:7' is not available here") as caught:
        load(folder, device="cuda:7")
    assert not isinstance(caught.value, ModelFileError)
    assert load(folder, device="cpu").models_[0].head.mean[0].weight.device.type == "cpu"
