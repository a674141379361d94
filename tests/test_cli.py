"""The ``ebreg`` command: the demo end to end (one epoch), and bad options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ebreg.app.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_demo_writes_metrics_and_a_png(tmp_path) -> None:
    out = tmp_path / "demo"
    proc = _run("demo", "--out", str(out), "--epochs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("kl_to_truth", "kl_to_truth_proposal", "test_nll_grid", "test_nll_snis_m1024",
                "train_seconds", "seed", "model_config", "train_config"):
        assert key in metrics, key
    assert metrics["seed"] == 0 and metrics["train_config"]["method"] == "joint_nce"
    assert 0 < metrics["kl_to_truth"] < 5
    assert (out / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "KL(truth || model)" in proc.stdout
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--out", "x", "--method", "sgd"], "invalid choice: 'sgd'"),
        (["demo", "--out", "x", "--epochs", "0"], "must be a positive integer"),
        (["demo"], "the following arguments are required: --out"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ebreg.app.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "x").exists()


def test_missing_data_file_is_reported(tmp_path) -> None:
    proc = _run("demo", "--out", str(tmp_path / "o"), "--epochs", "1", "--data", str(tmp_path / "nope.npz"))
    assert proc.returncode == 2
    assert "reference toy data not found" in proc.stderr and "nope.npz" in proc.stderr
    assert not (tmp_path / "o").exists()
