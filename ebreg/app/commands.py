"""What ``ebreg fit | predict | evaluate | plot`` do, as functions of plain arguments.

Each returns a dict of what it measured or wrote; :mod:`ebreg.app.cli` parses options, prints
and turns errors (:class:`ValueError` and kin) into one line and exit status 2. Nothing
is written until the inputs have been checked, and every file is written atomically.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from ..config import JointMethod
from ..io import atomic_folder, folder_written_as, write_json, write_text
from .report import html_report
from .tables import TableError, TableSpec, finite_rows, read_table, table_format, write_table

__all__ = ["fit_table", "predict_table", "evaluate_table", "plot_row", "COVERAGE_LEVELS"]

COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)


#: ``metrics.json``'s mark of a report folder that ``ebreg evaluate`` may replace
REPORT_FORMAT = "ebreg-report"


def _clean(X: np.ndarray, Y: np.ndarray | None, names: list[str], what: str,
           drop_missing: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Refuse (or with ``drop_missing`` drop) rows with NaN/inf; returns the kept rows' mask too."""
    values = X if Y is None else np.hstack([X, Y])
    keep, problem = finite_rows(values, names, what)
    if problem and not drop_missing:
        raise TableError(f"{problem}; fix them or pass --drop-missing to leave those rows out")
    if not keep.any():
        raise TableError(f"{what}: no rows left after dropping rows with missing values")
    return X[keep], (None if Y is None else Y[keep]), keep


def fit_table(data: str | Path, targets: list[str], out: str | Path, features: list[str] | None = None,
              method: str = "joint_nce", seed: int = 0, drop_missing: bool = False, one_hot: bool = False,
              progress: bool = True, command: str | None = None, **options: Any) -> dict[str, Any]:
    """Train the estimator of ``method`` on a table and write the model folder ``out``.

    ``options``: the estimator's parameters (``epochs``, ``components``, ``ensemble_size``,
    ``patience``, ``validation_fraction``, ``device``, ``refine_mdn``, ``search``); None keeps its default.
    ``command``: the command line, kept in the model card of ``model.json``.
    """
    from ..model_file import is_model_folder

    out = Path(out)
    if out.is_symlink() or (out.exists() and not (out.is_dir() and is_model_folder(out))):
        raise TableError(f"{out} exists and is not an ebreg model folder; choose another --out")
    _refuse_overlap(out, [data], "--out")
    options = {k: v for k, v in options.items() if v is not None and v is not False}
    if options.get("refine_mdn") and method != "joint_nce":
        raise TableError(f"--refine-mdn applies to the EBM trained by joint_nce, not to {method}")
    frame = read_table(data)
    spec = TableSpec.infer(frame, targets, features, one_hot)
    X, Y, keep = _clean(spec.feature_matrix(frame), spec.target_matrix(frame), spec.feature_names + spec.targets,
                        str(data), drop_missing)
    if len(X) < 2:
        raise TableError(f"{data}: training needs at least 2 rows, got {len(X)}")
    constant = [t for t, col in zip(spec.targets, Y.T) if np.ptp(col) == 0]
    if constant:
        raise TableError(f"target column(s) {', '.join(constant)} are constant ({Y[0, spec.targets.index(constant[0])]:g} "
                         f"in every row): there is no distribution to learn")
    from ..estimators import EBMRegressor, MDNRegressor  # torch and Lightning: imported once the data passed

    cls = EBMRegressor if method in get_args(JointMethod) else MDNRegressor
    est = cls(method=method, random_state=seed, verbose=progress, **options)
    est.fit(X, Y[:, 0] if Y.shape[1] == 1 else Y)
    metrics = {"train_rows": int(len(X)), "dropped_rows": int((~keep).sum()), "epochs_run": est.n_epochs_,
               "best_epoch": est.best_epoch_, "validation_nll": est.best_val_nll_,
               "train_seconds": round(est.train_seconds_, 2),
               **({"search": est.search_results_} if est.search_results_ else {})}
    card = {"trained": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "data": str(data), "rows": int(len(X)),
            "targets": {t: {"mean": float(c.mean()), "std": float(c.std()), "min": float(c.min()),
                            "max": float(c.max())} for t, c in zip(spec.targets, Y.T)}}
    est.save(out, metrics=metrics, table=spec.to_dict(), card=card)
    return {"model": str(out), "method": method, **metrics}


def _load(model: str | Path, device: str | None = None) -> tuple[Any, TableSpec]:
    from ..estimators import load

    est = load(model, device)
    if not est.table_:
        raise TableError(f"{model} was saved from Python without a table description; "
                         f"use it from Python (ebreg.load) or re-train it with `ebreg fit`")
    return est, TableSpec.from_dict(est.table_)


def predict_table(model: str | Path, data: str | Path, out: str | Path, interval: float | str | None = "auto",
                  quantiles: list[float] | None = None, samples: int = 0, drop_missing: bool = False,
                  seed: int = 0, device: str | None = None, unknown_categories: str = "error") -> dict[str, Any]:
    """Per row: mean, stddev, interval bounds, quantiles and samples; written beside the
    input's columns to ``out`` (CSV or Parquet). ``interval``: the central interval's level,
    None for none, ``"auto"`` for 0.9. With several target columns, intervals and quantiles
    are each target's own (its marginal distribution). ``device``: where to predict
    (default: the model's own). ``unknown_categories``: ``"error"`` refuses a category unseen in
    training, ``"ignore"`` encodes it as none of the known ones."""
    table_format(out, ("csv", "parquet"))
    _refuse_overlap(out, [data, model], "--out")
    est, spec = _load(model, device)
    if interval == "auto":
        interval = 0.9
    frame = read_table(data)
    X, _, keep = _clean(spec.feature_matrix(frame, unknown_categories), None, spec.feature_names, str(data),
                        drop_missing)
    dist = est.predict_dist(X)
    result = frame[keep].reset_index(drop=True).copy()
    columns: dict[str, np.ndarray] = {}
    one = len(spec.targets) == 1
    found = dist.summary(interval if one else None, (quantiles or ()) if one else (), samples, random_state=seed)
    mean, std = found["mean"].reshape(len(X), -1), found["std"].reshape(len(X), -1)
    draws = found["samples"].reshape(samples, len(X), -1) if samples else None
    for j, t in enumerate(spec.targets):
        columns[f"{t}_mean"], columns[f"{t}_stddev"] = mean[:, j], std[:, j]
        # with several targets, each one's interval and quantiles are its marginal's
        per_target = found if one else dist.marginal(j).summary(interval, quantiles or ())
        if interval is not None:
            low, high = per_target["interval"]
            pct = f"{100 * interval:g}"
            columns[f"{t}_low{pct}"], columns[f"{t}_high{pct}"] = low.reshape(-1), high.reshape(-1)
        if quantiles:
            q = per_target["quantiles"].reshape(len(quantiles), len(X))
            columns.update({f"{t}_q{level:g}": q[i] for i, level in enumerate(quantiles)})
    if draws is not None:
        for j, t in enumerate(spec.targets):
            columns.update({f"{t}_sample{k}": draws[k, :, j] for k in range(samples)})
    clash = sorted(set(columns) & set(result.columns))
    if clash:
        raise TableError(f"{data} already has column(s) {', '.join(clash)}; rename them before predicting")
    result = pd.concat([result, pd.DataFrame(columns)], axis=1)
    write_table(result, out)
    return {"rows": len(result), "dropped_rows": int((~keep).sum()), "out": str(out), "columns": list(columns)}


def _refuse_overlap(out: str | Path, inputs: list[str | Path], option: str) -> None:
    """Refuse an output that is one of the inputs, holds one of them, or lies inside one."""
    target = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            raise TableError(f"{option} {out} overlaps the input {given}; writing it would destroy that input")


def _metrics(est: Any, dist: Any, Y: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    y = Y[:, 0] if Y.shape[1] == 1 else Y
    mean = dist.mean().reshape(Y.shape)
    out: dict[str, Any] = {
        "rows": int(len(Y)),
        "nll": float(-dist.logpdf(y).mean()),
        "rmse": float(np.sqrt(((mean - Y) ** 2).mean())),
        "mae": float(np.abs(mean - Y).mean()),
    }
    arrays: dict[str, np.ndarray] = {}
    if Y.shape[1] == 1:
        import torch

        from ..metrics import calibration_error

        out["crps"] = float(dist.crps(y).mean())
        for level in COVERAGE_LEVELS:
            low, high = dist.interval(level)
            out[f"coverage{100 * level:g}"] = float(((low <= y) & (y <= high)).mean())
            arrays[f"interval{100 * level:g}"] = np.stack([low, high])
        pit = dist.cdf(y)
        out["calibration_error"] = calibration_error(torch.as_tensor(pit))
        arrays["pit"] = pit
    if hasattr(dist, "ess"):
        ess = dist.ess()
        out["ess_median"], out["ess_min"] = float(np.median(ess)), float(ess.min())
        out["samples_per_row"] = int(est.predict_samples)
    arrays["mean"] = mean
    return out, arrays


def evaluate_table(model: str | Path, data: str | Path, targets: list[str] | None = None,
                   report: str | Path | None = None, drop_missing: bool = False,
                   device: str | None = None, unknown_categories: str = "error") -> dict[str, Any]:
    """Scores on a table with observed targets; with ``report`` a folder of JSON and figures."""
    import torch

    from ..metrics import pit_coverage
    from . import plotting

    est, spec = _load(model, device)
    frame = read_table(data)
    observed = TableSpec(targets or spec.targets, spec.features, spec.one_hot)
    if len(observed.targets) != len(spec.targets):
        raise TableError(f"the model predicts {len(spec.targets)} target column(s), --target names "
                         f"{len(observed.targets)}")
    X, Y, _ = _clean(observed.feature_matrix(frame, unknown_categories), observed.target_matrix(frame),
                     spec.feature_names + observed.targets, str(data), drop_missing)
    dist = est.predict_dist(X)
    metrics, arrays = _metrics(est, dist, Y)
    if report is None:
        return metrics
    report = Path(report)
    _refuse_overlap(report, [data, model], "--report")

    target = observed.targets[0]

    def write(folder: Path) -> None:
        write_json(folder / "metrics.json", {"format": REPORT_FORMAT, "model": str(model), "data": str(data),
                                             **metrics})
        figures = []
        if "pit" in arrays:
            plotting.pit_histogram(folder / "pit.png", arrays["pit"])
            levels = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
            cover = pit_coverage(torch.as_tensor(arrays["pit"]), levels)
            plotting.reliability_diagram(folder / "reliability.png", levels.numpy(), cover.numpy())
            low, high = arrays["interval90"]
            plotting.predicted_vs_true(folder / "predicted_vs_true.png", Y[:, 0], arrays["mean"][:, 0], low, high,
                                       0.9, target)
            figures = [("predicted_vs_true.png", f"Predictive mean and 90 % interval against the observed {target}"),
                       ("pit.png", "PIT histogram: flat when calibrated; U-shaped when intervals are too narrow"),
                       ("reliability.png", "Coverage of central intervals against their nominal level")]
            if X.shape[1] == 1:
                _density_map(folder / "density.png", est, X[:, 0], Y[:, 0], x_label=spec.feature_names[0],
                             y_label=target)
                figures.insert(1, ("density.png", f"The model's density of {target} over {spec.feature_names[0]}"))
        summary = {"rows": int(len(Y)), **{f"{t} mean": float(c.mean()) for t, c in zip(observed.targets, Y.T)},
                   **{f"{t} std": float(c.std()) for t, c in zip(observed.targets, Y.T)}}
        settings = {"estimator": type(est).__name__, **{k: v for k, v in est.get_params().items() if v is not None},
                    **{f"card: {k}": v for k, v in getattr(est, "card_", {}).items() if k != "targets"}}
        write_text(folder / "report.html", html_report(f"ebreg evaluation of {Path(model).name} on {Path(data).name}",
                                                       metrics, settings, summary, folder, figures))

    atomic_folder(report, write, partial(folder_written_as, marker="metrics.json", fmt=REPORT_FORMAT))
    metrics["report"] = str(report)
    return metrics


def _density_map(path: Path, est: Any, x: np.ndarray, y: np.ndarray, nx: int = 120, ny: int = 160,
                 x_label: str = "x", y_label: str = "y") -> None:
    """Heat map of p(y|x) over the data's x and y ranges (one input column, D = 1)."""
    from .plotting import density_panels

    pad_x, pad_y = 0.02 * np.ptp(x), 0.15 * np.ptp(y)
    xs = np.linspace(x.min() - pad_x, x.max() + pad_x, nx)
    ys = np.linspace(y.min() - pad_y, y.max() + pad_y, ny)
    density = est.predict_dist(xs[:, None]).pdf(ys[:, None])  # (ny, nx)
    density_panels(path, [(f"model p({y_label} | {x_label})", density)], xs, ys, x_label=x_label, y_label=y_label)


def plot_row(model: str | Path, data: str | Path, row: int, out: str | Path, points: int = 400) -> dict[str, Any]:
    """The predictive density of one row (and the proposal's, for an EBM), with the observed value."""
    import torch

    from ..estimators import torch_device
    from ..proposals import pool_mixtures
    from .plotting import row_density

    if Path(out).suffix.lower() != ".png":
        raise TableError(f"{out}: the figure is written as PNG; give a file name ending in .png")
    est, spec = _load(model)
    frame = read_table(data)
    if not 0 <= row < len(frame):
        raise TableError(f"row {row} is out of range: {data} has rows 0..{len(frame) - 1}")
    x = spec.feature_matrix(frame.iloc[[row]])
    _, problem = finite_rows(x, spec.feature_names, f"row {row}")
    if problem:
        raise TableError(problem)
    if len(spec.targets) != 1:
        raise TableError(f"plot draws one-dimensional densities; this model predicts {len(spec.targets)} columns")
    dist = est.predict_dist(x)[0]
    lo, hi = dist.ppf([0.001, 0.999])
    pad = 0.25 * (hi - lo) + 1e-6
    grid = np.linspace(lo - pad, hi + pad, points)
    curves = [("model", dist.pdf(grid))]
    if hasattr(est.models_[0], "proposal_distribution"):
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float32, device=torch_device(est.device))
            q = pool_mixtures([m.proposal_distribution(m.features(xt)) for m in est.models_])
            g = torch.as_tensor(grid, dtype=torch.float32, device=xt.device).view(-1, 1, 1)
            curves.append(("proposal", np.exp(q.log_prob(g).cpu().double().numpy()[:, 0])))
    target = spec.targets[0]
    observed = None
    if target in frame.columns and pd.api.types.is_numeric_dtype(frame[target]):
        value = float(frame[target].iloc[row])
        observed = value if np.isfinite(value) else None
    row_density(out, grid, curves, observed, title=f"row {row}")
    return {"out": str(out), "observed": observed}
