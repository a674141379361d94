"""``ebreg fit | predict | evaluate | plot`` run as real subprocesses (round trips, and one bad
input of each group), and every bad input answered by one line, exit status 2 and no output
left behind (all of them in this process, through the command line's entry point: a
subprocess each that loads a model would spend seconds importing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ebreg.model_file import FORMAT_VERSION

PNG = b"\x89PNG\r\n\x1a\n"


def ebreg(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ebreg.app.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def run_here(*args: object, capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess:
    """``ebreg ARGS`` run by the command line's entry point in this process: exit status and output."""
    from ebreg import fast_paths
    from ebreg.app.cli import main

    capsys.readouterr()
    with fast_paths():  # the command line's settings last for its call only
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit_:
            status = exit_.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, out.out, out.err)


def ebreg_here(*args: object, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and standard error of ``ebreg ARGS`` (:func:`run_here`)."""
    proc = run_here(*args, capsys=capsys)
    return proc.returncode, proc.stderr


def _frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    x = rng.uniform(-2, 2, n)
    return pd.DataFrame({"x": x, "z": rng.randn(n), "y": np.sin(2 * x) + 0.1 * rng.randn(n), "id": np.arange(n)})


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with train.csv and a model trained from it by the real command."""
    root = tmp_path_factory.mktemp("cli")
    _frame().to_csv(root / "train.csv", index=False)
    proc = ebreg("fit", root / "train.csv", "--target", "y", "--features", "x,z", "--epochs", "3",
                 "--no-progress", "--out", root / "model")
    assert proc.returncode == 0, proc.stderr
    assert "validation NLL" in proc.stdout and "5 models" in proc.stdout  # 120 rows: an ensemble by default
    return root


def test_fit_writes_a_model_folder(work: Path) -> None:
    meta = json.loads((work / "model" / "model.json").read_text())
    assert meta["table"] == {"targets": ["y"], "features": ["x", "z"], "one_hot": {}}
    assert meta["metrics"]["train_rows"] == 120 and len(meta["fitted"]["seeds_"]) == 5
    assert (work / "model" / "weights.safetensors").exists()


def test_predict_keeps_other_columns_and_reorders_by_name(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _frame(20, seed=1)
    data[["id", "y", "z", "x"]].assign(extra="k").to_csv(work / "new.csv", index=False)  # reordered + extra
    proc = run_here("predict", work / "model", work / "new.csv", "--out", work / "pred.csv",
                    "--quantiles", "0.1,0.5,0.9", "--samples", "3", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(work / "pred.csv")
    assert list(out.columns[:5]) == ["id", "y", "z", "x", "extra"]
    for col in ("y_mean", "y_stddev", "y_low90", "y_high90", "y_q0.1", "y_q0.5", "y_q0.9", "y_sample2"):
        assert col in out.columns, col
    assert len(out) == 20 and (out["y_low90"] <= out["y_q0.5"]).all() and (out["y_q0.5"] <= out["y_high90"]).all()
    # the same rows in the training column order predict the same
    data[["x", "z", "y", "id"]].to_csv(work / "same.csv", index=False)
    assert run_here("predict", work / "model", work / "same.csv", "--out", work / "same_pred.csv",
                    capsys=capsys).returncode == 0
    same = pd.read_csv(work / "same_pred.csv")
    assert np.allclose(same["y_mean"], out["y_mean"], atol=1e-6)


def test_evaluate_prints_metrics_and_writes_a_report(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_here("evaluate", work / "model", work / "train.csv", "--report", work / "report", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    for key in ("nll", "rmse", "mae", "crps", "coverage90", "calibration_error", "ess_median"):
        assert key in proc.stdout
    metrics = json.loads((work / "report" / "metrics.json").read_text())
    assert 0 <= metrics["coverage90"] <= 1 and metrics["rows"] == 120
    for fig in ("pit.png", "reliability.png", "predicted_vs_true.png"):
        assert (work / "report" / fig).read_bytes()[:8] == PNG
    _check_html_report(work / "report" / "report.html", figures=3, words=["y", "EBMRegressor", "coverage90",
                                                                          "train.csv", "command"])


def _check_html_report(path: Path, figures: int, words: list[str]) -> None:
    """The page parses, links to nothing outside itself, and every figure decodes as a PNG image."""
    import base64
    import io
    from html.parser import HTMLParser

    import matplotlib.image

    class Page(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.images: list[str] = []
            self.links: list[str] = []
            self.text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            self.links += [v for k, v in attrs.items() if k in ("href", "src") and not v.startswith("data:")]

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    assert len(page.images) == figures and not page.links
    for src in page.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    text = " ".join(page.text)
    assert all(word in text for word in words), text


def test_plot_draws_one_row(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_here("plot", work / "model", work / "train.csv", "--row", "5", "--out", work / "row5.png", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert (work / "row5.png").read_bytes()[:8] == PNG


def test_one_input_column_gets_a_density_map(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _frame()[["x", "y"]].to_csv(work / "one.csv", index=False)
    proc = run_here("fit", work / "one.csv", "--target", "y", "--epochs", "2", "--method", "mdn", "--ensemble-size", "2",
                 "--no-progress", "--out", work / "one_model", capsys=capsys)
    assert proc.returncode == 0 and "2 models" in proc.stdout, proc.stderr
    proc = run_here("evaluate", work / "one_model", work / "one.csv", "--report", work / "one_report", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert (work / "one_report" / "density.png").read_bytes()[:8] == PNG


def test_fit_can_refine_an_mdn(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ebreg import load

    proc = run_here("fit", work / "train.csv", "--target", "y", "--epochs", "2", "--ensemble-size", "1",
                 "--refine-mdn", "--no-progress", "--out", work / "refined", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    est = load(work / "refined")
    assert est.refine_mdn and est.models_[0].residual_energy


def test_fit_can_search_and_says_what_it_chose(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import re

    proc = run_here("fit", work / "train.csv", "--target", "y", "--epochs", "2", "--method", "mdn", "--search", "auto",
                 "--no-progress", "--out", work / "searched", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("search: "))
    nll = r"validation NLL -?\d+\.\d{4}( \(chosen\))?"
    assert re.fullmatch(rf"search: default {nll}; components=8 {nll}; hidden=\(128, 128\) {nll}", line), line
    assert line.count("(chosen)") == 1
    rows = json.loads((work / "searched" / "model.json").read_text())["metrics"]["search"]
    assert [row["params"] for row in rows] == [{}, {"components": 8}, {"hidden": [128, 128]}]
    assert [row["chosen"] for row in rows] == [nll == min(r["val_nll"] for r in rows) for nll in
                                               (r["val_nll"] for r in rows)]


def _bad_inputs(work: Path) -> dict[str, tuple[list, str, Path]]:
    """case -> (arguments, expected message (regex), output path that must not appear)."""
    frame = _frame()
    nan_x = frame.copy()
    nan_x.loc[4, "x"] = np.nan
    nan_x.to_csv(work / "nan_x.csv", index=False)
    inf_y = frame.copy()
    inf_y.loc[[2, 7], "y"] = np.inf
    inf_y.to_csv(work / "inf_y.csv", index=False)
    frame.head(0).to_csv(work / "empty.csv", index=False)
    frame.head(1).to_csv(work / "one_row.csv", index=False)
    frame.assign(y=3.0).to_csv(work / "constant.csv", index=False)
    frame.assign(colour=np.where(frame["x"] > 0, "red", "blue")).to_csv(work / "text.csv", index=False)
    frame.assign(colour=np.where(frame["x"] > 0, "red", "blue")).assign(
        colour=lambda f: f["colour"].mask(f.index == 6)).to_csv(work / "text_nan.csv", index=False)
    (work / "folder.csv").mkdir(exist_ok=True)
    (work / "twice.csv").write_text("x,y,x\n1,2,3\n4,5,6\n7,8,9\n")
    frame[["x", "y"]].to_csv(work / "no_z.csv", index=False)
    (work / "garbage.npz").write_bytes(b"this is not a zip file")
    (work / "data.txt").write_text("x,y\n1,2\n")
    (work / "not_model").mkdir(exist_ok=True)
    (work / "not_model" / "keep.txt").write_text("mine")
    for how in ("tampered", "truncated", "newer"):
        shutil.copytree(work / "model", work / f"model_{how}", dirs_exist_ok=True)
    weights = work / "model_tampered" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x55
    weights.write_bytes(bytes(data))
    trunc = work / "model_truncated" / "weights.safetensors"
    trunc.write_bytes(trunc.read_bytes()[:64])
    meta = json.loads((work / "model_newer" / "model.json").read_text())
    meta["format_version"] += 1
    meta["ebreg_version"] = "9.0.0"
    (work / "model_newer" / "model.json").write_text(json.dumps(meta))
    train, out = work / "train.csv", work / "out_model"
    fit = ["fit", "--target", "y", "--epochs", "1", "--no-progress", "--out", out]
    pred = work / "out.csv"
    return {
        "file missing": (["fit", work / "nope.csv", *fit[1:]], r"nope.csv: no such file", out),
        "unknown format": (["fit", work / "data.txt", *fit[1:]], r"unknown format '.txt'", out),
        "unreadable file": (["fit", work / "garbage.npz", *fit[1:]], r"cannot be read as NPZ", out),
        "target column absent": (["fit", train, "--target", "price", "--out", out],
                                 r"column\(s\) 'price' not in the data; it has x, z, y, id", out),
        "non-numeric feature": (["fit", work / "text.csv", *fit[1:]], r"colour are not numeric; pass --one-hot", out),
        "missing category": (["fit", work / "text_nan.csv", "--one-hot", *fit[1:]],
                             r"NaN or infinite values in 1 row\(s\) \(rows 6; columns colour=blue, colour=red\)", out),
        "data is a folder": (["fit", work / "folder.csv", *fit[1:]], r"folder.csv: not a regular file", out),
        "target named twice": (["fit", train, "--target", "y,y", "--out", out], r"column\(s\) named twice: y", out),
        "column named twice": (["fit", work / "twice.csv", *fit[1:]], r"column\(s\) named twice in the header: x", out),
        "NaN in a feature": (["fit", work / "nan_x.csv", *fit[1:]],
                             r"NaN or infinite values in 1 row\(s\) \(rows 4; columns x\).*--drop-missing", out),
        "inf in the target": (["fit", work / "inf_y.csv", *fit[1:]],
                              r"in 2 row\(s\) \(rows 2, 7; columns y\)", out),
        "empty data": (["fit", work / "empty.csv", *fit[1:]], r"the table has no rows", out),
        "one row": (["fit", work / "one_row.csv", *fit[1:]], r"at least 2 rows, got 1", out),
        "constant target": (["fit", work / "constant.csv", *fit[1:]], r"y are constant \(3 in every row\)", out),
        "invalid epochs": (["fit", train, "--target", "y", "--epochs", "0", "--out", out],
                           r"--epochs: must be a positive integer, got 0", out),
        "invalid ensemble size": (["fit", train, "--target", "y", "--ensemble-size", "many", "--out", out],
                                  r"--ensemble-size: must be a positive integer or 'auto', got many", out),
        "unknown method": (["fit", train, "--target", "y", "--method", "magic", "--out", out],
                           r"--method: invalid choice: 'magic'", out),
        "invalid device": (["fit", train, "--target", "y", "--device", "tpu", "--out", out],
                           r"--device: must be cpu, cuda, cuda:N, mps or auto, got tpu", out),
        "absent device": (["fit", train, "--target", "y", "--epochs", "1", "--device", "cuda:7", "--out", out],
                          r"device 'cuda:7' is not available here", out),
        "invalid validation fraction": (["fit", train, "--target", "y", "--validation-fraction", "1", "--out", out],
                                        r"--validation-fraction: must be a number in \[0, 1\), got 1", out),
        "refine an MDN with the MDN": (["fit", train, "--target", "y", "--method", "mdn", "--refine-mdn", "--out", out],
                                       r"--refine-mdn applies to the EBM trained by joint_nce, not to mdn", out),
        "out is not a model folder": (["fit", train, *fit[1:-1], work / "not_model"],
                                      r"not_model exists and is not an ebreg model folder",
                                      work / "not_model" / "model.json"),
        "feature missing at predict": (["predict", work / "model", work / "no_z.csv", "--out", pred],
                                       r"lacks feature column\(s\) the model was trained on: z", pred),
        "NaN at predict": (["predict", work / "model", work / "nan_x.csv", "--out", pred],
                           r"rows 4; columns x", pred),
        "unknown output format": (["predict", work / "model", train, "--out", work / "out.xlsx"],
                                  r"unknown format '.xlsx'; use one of .csv, .parquet, .pq", work / "out.xlsx"),
        "invalid interval": (["predict", work / "model", train, "--out", pred, "--interval", "1.5"],
                             r"--interval: must be a number strictly between 0 and 1, got 1.5", pred),
        "tampered model": (["predict", work / "model_tampered", train, "--out", pred], r"changed or truncated", pred),
        "truncated model": (["predict", work / "model_truncated", train, "--out", pred], r"changed or truncated", pred),
        "model from a newer version": (["predict", work / "model_newer", train, "--out", pred],
                                       rf"newer ebreg \(9.0.0, model format {FORMAT_VERSION + 1}\).*upgrade", pred),
        "missing model folder": (["predict", work / "no_model", train, "--out", pred], r"no model folder", pred),
        "row out of range": (["plot", work / "model", train, "--row", "500", "--out", work / "r.png"],
                             r"row 500 is out of range: .* has rows 0..119", work / "r.png"),
    }


CASES = ["file missing", "unknown format", "unreadable file", "target column absent", "non-numeric feature",
         "NaN in a feature", "inf in the target", "empty data", "one row", "constant target", "invalid epochs",
         "missing category", "data is a folder", "target named twice", "column named twice",
         "invalid ensemble size", "unknown method", "invalid device", "absent device", "invalid validation fraction",
         "refine an MDN with the MDN", "out is not a model folder",
         "feature missing at predict", "NaN at predict",
         "unknown output format", "invalid interval", "tampered model", "truncated model",
         "model from a newer version", "missing model folder", "row out of range"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_one_line_status_2_and_no_output(work: Path, case: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import re

    args, message, output = _bad_inputs(work)[case]
    status, stderr = ebreg_here(*args, capsys=capsys)
    lines = stderr.strip().splitlines()
    assert status == 2, (case, stderr)
    assert len(lines) == 1 and "error:" in lines[0], stderr
    assert re.search(message, lines[0]), lines[0]
    assert not output.exists(), output
    assert not list(work.glob(".*.tmp")), "temporary file left behind"


#: one case of each group of bad input, run through the real command in its own process: the data
#: (reading, columns, values), the options, the output path, the model folder, prediction data
REAL_PROCESS_CASES = ["file missing", "column named twice", "missing category", "invalid epochs",
                      "out is not a model folder", "unknown output format", "tampered model", "feature missing at predict"]


def test_each_group_of_bad_input_is_refused_by_the_real_command(work: Path) -> None:
    import re

    cases = {name: _bad_inputs(work)[name] for name in REAL_PROCESS_CASES}
    running = {name: subprocess.Popen([sys.executable, "-m", "ebreg.app.cli", *map(str, args)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=work)
               for name, (args, _, _) in cases.items()}  # side by side: most refuse before torch is imported
    for name, proc in running.items():
        stdout, stderr = proc.communicate(timeout=120)
        _, message, output = cases[name]
        assert proc.returncode == 2 and stdout == "", (name, stdout, stderr)
        assert len(stderr.strip().splitlines()) == 1 and re.search(message, stderr), (name, stderr)
        assert "Traceback" not in stderr and not output.exists(), name
    assert not list(work.glob(".*.tmp"))


def test_drop_missing_trains_on_the_complete_rows(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _bad_inputs(work)
    proc = run_here("fit", work / "nan_x.csv", "--target", "y", "--features", "x,z", "--epochs", "1", "--drop-missing",
                 "--no-progress", "--out", work / "dropped", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    assert "119 rows, 1 dropped" in proc.stdout


def test_one_hot_encodes_categories_and_refuses_unseen_ones(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = _frame().assign(colour=lambda f: np.where(f["x"] > 0, "red", "blue"))
    frame.to_csv(work / "cat.csv", index=False)
    assert run_here("fit", work / "cat.csv", "--target", "y", "--one-hot", "--epochs", "1", "--method", "mdn",
                 "--no-progress", "--out", work / "cat_model", capsys=capsys).returncode == 0
    frame.assign(colour="green").to_csv(work / "green.csv", index=False)
    proc = run_here("predict", work / "cat_model", work / "green.csv", "--out", work / "green_out.csv", capsys=capsys)
    assert proc.returncode == 2 and "categories unseen in training: green" in proc.stderr
    assert not (work / "green_out.csv").exists()
    proc = run_here("predict", work / "cat_model", work / "green.csv", "--out", work / "green_out.csv",
                 "--unknown-categories", "ignore", capsys=capsys)
    assert proc.returncode == 0, proc.stderr
    from ebreg import load
    from ebreg.app.tables import TableSpec

    est = load(work / "cat_model")  # green is neither red nor blue: both indicator columns 0
    X = TableSpec.from_dict(est.table_).feature_matrix(frame.assign(colour="green"), "ignore")
    assert np.allclose(pd.read_csv(work / "green_out.csv")["y_mean"], est.predict(X))
    assert np.all(X[:, -2:] == 0)


def test_inputs_and_other_tools_files_survive_every_output_path(work: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs that would destroy something: each refused in one line, status 2, everything left as it was."""
    other = work / "other_tool"
    other.mkdir()
    (other / "model.json").write_text('{"framework": "not ebreg"}')
    shutil.copy(work / "train.csv", other / "train.csv")
    reports = work / "old_report"
    reports.mkdir()
    (reports / "metrics.json").write_text('{"score": 1}')
    shutil.copy(work / "train.csv", reports / "data.csv")
    user = work / "user_folder"
    user.mkdir()
    shutil.copy(work / "train.csv", user / "train.csv")
    link = work / "link_model"
    link.symlink_to(work / "model", target_is_directory=True)
    before = {p: p.read_bytes() for p in (other / "train.csv", reports / "data.csv", user / "train.csv",
                                           work / "train.csv")}
    fit = ["--target", "y", "--features", "x,z", "--epochs", "1", "--no-progress"]
    cases = {
        "another tool's model folder": (["fit", work / "train.csv", *fit, "--out", other],
                                        r"other_tool exists and is not an ebreg model folder"),
        "data inside --out": (["fit", other / "train.csv", *fit, "--out", other],
                              r"is not an ebreg model folder"),
        "report folder not ours": (["evaluate", work / "model", reports / "data.csv", "--report", reports],
                                   r"--report .*old_report overlaps the input"),
        "report over the model": (["evaluate", work / "model", work / "train.csv", "--report", work / "model"],
                                  r"--report .*model overlaps the input"),
        "predict onto its input": (["predict", work / "model", work / "train.csv", "--out", work / "train.csv"],
                                   r"--out .*train.csv overlaps the input"),
        "symbolic link as --out": (["fit", work / "train.csv", *fit, "--out", link], r"exists and is not an ebreg model"),
    }
    for name, (args, message) in cases.items():
        status, stderr = ebreg_here(*args, capsys=capsys)
        assert status == 2 and len(stderr.strip().splitlines()) == 1, (name, stderr)
        assert re.search(message, stderr), (name, stderr)
    monkeypatch.chdir(user)  # `--out .` in a folder of the user's
    status, stderr = ebreg_here("fit", user / "train.csv", *fit, "--out", ".", capsys=capsys)
    assert status == 2 and "is not an ebreg model folder" in stderr, stderr
    assert sorted(p.name for p in user.iterdir()) == ["train.csv"]  # no hidden temporary folder
    assert sorted(p.name for p in work.glob(".*")) == []
    assert all(p.read_bytes() == content for p, content in before.items())
    assert link.is_symlink() and (work / "model" / "model.json").exists()


def test_a_two_dimensional_model_predicts_each_targets_marginal_interval_and_quantiles(
        work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ebreg import load

    frame = _frame().assign(y2=lambda f: f["y"] + 0.1 * f["z"])
    frame.to_csv(work / "two.csv", index=False)
    fit = ["fit", work / "two.csv", "--target", "y,y2", "--features", "x,z", "--epochs", "1", "--method", "mdn",
           "--no-progress", "--out", work / "two_model"]
    assert ebreg_here(*fit, capsys=capsys)[0] == 0
    status, _ = ebreg_here("predict", work / "two_model", work / "two.csv", "--out", work / "two.pred.csv",
                           "--interval", "0.8", "--quantiles", "0.5", capsys=capsys)
    assert status == 0
    pred = pd.read_csv(work / "two.pred.csv")
    marginal = load(work / "two_model").predict_dist(frame[["x", "z"]].to_numpy()).marginal(1)
    low, high = marginal.interval(0.8)
    np.testing.assert_allclose(pred["y2_low80"], low, rtol=1e-6)
    np.testing.assert_allclose(pred["y2_high80"], high, rtol=1e-6)
    np.testing.assert_allclose(pred["y2_q0.5"], marginal.median(), rtol=1e-6)
    assert {"y_low80", "y_high80", "y_q0.5", "y_mean", "y2_stddev"} <= set(pred.columns)


@pytest.mark.parametrize("mask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask(work: Path, tmp_path: Path, mask: int, file_mode: int, folder_mode: int,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    calls = [["predict", work / "model", work / "train.csv", "--out", tmp_path / "pred.csv"],
             ["evaluate", work / "model", work / "train.csv", "--report", tmp_path / "report"],
             ["fit", work / "train.csv", "--target", "y", "--epochs", "1", "--method", "mdn", "--no-progress",
              "--out", tmp_path / "model"]]
    previous = os.umask(mask)
    try:
        assert all(ebreg_here(*call, capsys=capsys)[0] == 0 for call in calls)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "pred.csv").stat().st_mode) == file_mode
    for folder in (tmp_path / "report", tmp_path / "model"):
        assert stat.S_IMODE(folder.stat().st_mode) == folder_mode, folder
        for path in folder.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == file_mode, path


def test_a_fit_into_a_log_file_writes_one_plain_line_per_member_and_epoch(work: Path) -> None:
    proc = ebreg("fit", work / "train.csv", "--target", "y", "--features", "x,z", "--epochs", "3",
                 "--ensemble-size", "2", "--out", work / "logged_model")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("wrote ") and len(proc.stdout.splitlines()) == 2  # results only
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    pattern = r"member ([12])/2 epoch ([1-3])/3: nce [-\d.]+, proposal_kl [-\d.]+, ess_fraction [\d.]+, " \
              r"val_nll [-\d.]+, [\d.]+ s"
    assert len(lines) == 6 and all(re.fullmatch(pattern, line) for line in lines), proc.stderr
    assert [re.fullmatch(pattern, line).groups() for line in lines] == [(str(m), str(e)) for m in range(1, 3)
                                                                        for e in range(1, 4)]


def test_ctrl_c_during_a_fit_leaves_the_existing_model_as_it_was(work: Path) -> None:
    import hashlib
    import signal

    target = work / "interrupted"
    shutil.copytree(work / "model", target)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in target.iterdir()}
    # Ctrl-C's default action in the child, whatever this process inherited (a job started in the
    # background of a shell ignores SIGINT, and so would the child)
    proc = subprocess.Popen([sys.executable, "-m", "ebreg.app.cli", "fit", work / "train.csv", "--target", "y",
                             "--epochs", "150", "--out", target], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "epoch 1/150" in proc.stderr.readline()  # training has started
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    assert rest.strip().splitlines()[-1] == "ebreg: interrupted; nothing was written"
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in target.iterdir()} == before
    assert not list(work.glob(".interrupted*"))


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_one(tmp_path: Path) -> None:
    from ebreg.io import atomic_folder, write_text

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".model.{dead}.abc.tmp").mkdir()  # what a SIGKILL mid-write leaves
    (tmp_path / f".out.csv.{dead}.abc.tmp").write_text("half")
    (tmp_path / f".out.csv.{os.getpid()}.live.tmp").write_text("a writer still at work")
    atomic_folder(tmp_path / "model", lambda folder: write_text(folder / "a.txt", "a"), lambda path: True)
    write_text(tmp_path / "out.csv", "x\n1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model", "out.csv", f".out.csv.{os.getpid()}.live.tmp"])
