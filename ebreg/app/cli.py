"""Command line: ``ebreg demo | fit | predict | evaluate | plot``.

Every error a user can cause (a missing or unreadable file, a wrong column, bad values,
a damaged model folder, an invalid option) ends in one line ``ebreg: error: ...`` and exit
status 2, and leaves no partial output behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import get_args

from .._fast import set_fast_paths
from ..config import DEVICE_PATTERN, METHODS, JointMethod, MDNMethod

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _ensemble_size(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text}")
    return int(text)


def _number(text: str, low_included: bool, range_text: str) -> float:
    """``text`` as a number in ``[0, 1)`` (``low_included``) or ``(0, 1)``, else a parse error."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 <= value < 1 if low_included else 0 < value < 1):
        raise argparse.ArgumentTypeError(f"must be a number {range_text}, got {text}")
    return value


def _level(text: str) -> float:
    return _number(text, False, "strictly between 0 and 1")


def _levels(text: str) -> list[float]:
    return [_level(t) for t in text.split(",")]


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"column(s) named twice: {', '.join(twice)}")
    return names


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (CUDA, else MPS, else the CPU)"


def _device(text: str) -> str:
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N, mps or auto, got {text}")
    return text


def _fraction(text: str) -> float:
    return _number(text, True, "in [0, 1)")


def _prediction_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that predicts from a model folder takes."""
    parser.add_argument("--drop-missing", action="store_true", help="leave out rows with NaN or inf")
    parser.add_argument("--device", type=_device, default=None, help=DEVICE_HELP + " (default: the model's)")
    parser.add_argument("--unknown-categories", choices=("error", "ignore"), default="error",
                        help="a category unseen in training: refused, or encoded as none of the known (default: error)")


def _versions() -> str:
    """ebreg's, torch's and Lightning's versions, read without importing torch or Lightning."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"ebreg {__version__} (torch {installed('torch')}, lightning {installed('lightning')})"


def _table_commands(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser("fit", help="train a model on a table (CSV, Parquet or NPZ) and write a model folder")
    fit.add_argument("data", help="training table: .csv (with a header), .parquet or .npz")
    fit.add_argument("--target", required=True, type=_names, help="target column(s), comma-separated")
    fit.add_argument("--features", type=_names, default=None, help="feature columns (default: all others)")
    fit.add_argument("--method", choices=get_args(JointMethod) + get_args(MDNMethod), default="joint_nce",
                     help="training method (default: joint_nce, an EBM; mdn and mdn_teacher train an MDN)")
    fit.add_argument("--epochs", type=_positive_int, default=None,
                     help="most epochs; early stopping may end sooner (default: 150)")
    fit.add_argument("--components", type=_positive_int, default=None, help="mixture components K (default: 4)")
    fit.add_argument("--ensemble-size", type=_ensemble_size, default=None,
                     help="models to train and average: a positive integer or 'auto' (default: for the EBM "
                          "5 below 2,000 rows, else 1; for the MDN 1)")
    fit.add_argument("--patience", type=_positive_int, default=None,
                     help="epochs without a better validation NLL before stopping (default: 20)")
    fit.add_argument("--validation-fraction", type=_fraction, default=None,
                     help="share of the rows held out for early stopping, in [0, 1) (default: 0.1)")
    fit.add_argument("--device", type=_device, default=None, help=DEVICE_HELP + " (default: cpu)")
    fit.add_argument("--log-dir", default=None,
                     help="folder for learning curves, CSV per model (and TensorBoard's when installed; default: none)")
    fit.add_argument("--refine-mdn", action="store_true",
                     help="joint_nce only: train the proposal as a plain MDN and the EBM as a learned "
                          "correction of it (EBMRegressor(refine_mdn=True))")
    fit.add_argument("--search", choices=["auto"], default=None,
                     help="auto: train the default settings and networks twice as wide (an MDN: also 8 "
                          "components) once each and keep the one with the lowest validation NLL (costs one fit "
                          "per candidate more; default: no search)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the split, weights and samples (default: 0)")
    fit.add_argument("--one-hot", action="store_true", help="one-hot encode non-numeric feature columns")
    fit.add_argument("--drop-missing", action="store_true", help="leave out rows with NaN or inf")
    fit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fit.add_argument("--out", required=True, help="model folder to write")

    pred = sub.add_parser("predict", help="predictive mean, stddev, intervals, quantiles and samples per row")
    pred.add_argument("model", help="model folder written by `ebreg fit`")
    pred.add_argument("data", help="table with the model's feature columns")
    pred.add_argument("--out", required=True, help="output table: .csv or .parquet")
    pred.add_argument("--interval", type=_level, default=None,
                      help="central interval level, per target column (default: 0.9)")
    pred.add_argument("--quantiles", type=_levels, default=None, help="quantile levels, e.g. 0.1,0.5,0.9 (default: none)")
    pred.add_argument("--samples", type=_non_negative_int, default=0, help="draws per row to include (default: 0)")
    pred.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    _prediction_options(pred)

    ev = sub.add_parser("evaluate", help="NLL, RMSE, MAE, CRPS, coverage and calibration on a labelled table")
    ev.add_argument("model")
    ev.add_argument("data")
    ev.add_argument("--target", type=_names, default=None, help="observed column(s) (default: the training names)")
    ev.add_argument("--report", default=None, help="folder for metrics.json and figures (default: none)")
    _prediction_options(ev)

    plot = sub.add_parser("plot", help="the predictive density of one row")
    plot.add_argument("model")
    plot.add_argument("data")
    plot.add_argument("--row", type=_non_negative_int, required=True, help="0-based row of DATA")
    plot.add_argument("--out", default=None, help="PNG file (default: row<I>.png)")


EXAMPLES = """examples:
  ebreg fit houses.csv --target price --out price-model
  ebreg predict price-model new.csv --out predictions.csv --quantiles 0.1,0.5,0.9
  ebreg evaluate price-model test.csv --report report/
  ebreg plot price-model test.csv --row 3 --out row3.png
  ebreg demo --out demo-out

Every command's options: ebreg COMMAND --help."""


class _Parser(argparse.ArgumentParser):
    """Reports a bad option as one line (with a pointer to --help) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ebreg", description="Energy-based probabilistic regression: full conditional densities "
                     "p(y|x) from tables.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_versions())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="train on the toy-1 problem and compare with the true density")
    demo.add_argument("--out", required=True, help="folder for metrics.json and density.png")
    demo.add_argument("--epochs", type=_positive_int, default=75, help="epochs (default: 75)")
    demo.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    demo.add_argument("--method", choices=METHODS, default="joint_nce", help="training method (default: joint_nce)")
    demo.add_argument("--components", type=_positive_int, default=4, help="proposal components K (default: 4)")
    demo.add_argument("--data", default=None, help="optional .npz (x, y) to train on instead of toy 1")
    demo.add_argument("--reference", action="store_true",
                      help="the official code's optimiser settings (constant lr 1e-3) instead of ours")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _table_commands(sub)
    return parser


def _demo(args: argparse.Namespace) -> int:
    if args.data is not None:  # a missing or unreadable file is refused before torch is imported
        from ..datasets import load_toy1_reference

        load_toy1_reference(args.data)
    from .demo import run_demo

    m = run_demo(args.out, epochs=args.epochs, seed=args.seed, method=args.method,
                 components=args.components, data=args.data, reference=args.reference,
                 progress=not args.no_progress)
    print(f"\n{m['method']} on toy 1, seed {m['seed']}, {m['epochs']} epochs "
          f"in {m['train_seconds']:.1f} s")
    print(f"  KL(truth || model)        {m['kl_to_truth']:.4f}")
    if "kl_to_truth_proposal" in m:
        print(f"  KL(truth || proposal)     {m['kl_to_truth_proposal']:.4f}")
    print(f"  test NLL (grid)           {m['test_nll_grid']:.4f}   (true density: {m['test_nll_true']:.4f})")
    if "test_nll_snis_m1024" in m:
        print(f"  test NLL (SNIS, M=1024)   {m['test_nll_snis_m1024']:.4f}")
    print(f"  wrote {args.out}/metrics.json and {args.out}/density.png")
    return 0


def _per_model(values: list, spec: str = "") -> str:
    """One value per model of an ensemble, ``a/b/c`` (``-`` for none)."""
    return "/".join("-" if v is None else format(v, spec) for v in values)


def _fit(args: argparse.Namespace) -> int:
    from .commands import fit_table

    r = fit_table(args.data, args.target, args.out, args.features, args.method, args.seed, args.drop_missing,
                  args.one_hot, progress=not args.no_progress, command=" ".join(["ebreg", *sys.argv[1:]]),
                  epochs=args.epochs, components=args.components, ensemble_size=args.ensemble_size,
                  refine_mdn=args.refine_mdn, patience=args.patience,
                  validation_fraction=args.validation_fraction, device=args.device, log_dir=args.log_dir,
                  search=args.search)
    dropped = f", {r['dropped_rows']} dropped for missing values" if r["dropped_rows"] else ""
    models = len(r["epochs_run"])
    print(f"{r['method']}: {r['train_rows']} rows{dropped}; {models} model{'s' * (models > 1)}, "
          f"{_per_model(r['epochs_run'])} epochs in {r['train_seconds']:.1f} s, kept epoch "
          f"{_per_model(r['best_epoch'])} (validation NLL {_per_model(r['validation_nll'], '.4f')})")
    if "search" in r:
        print("search: " + "; ".join(
            f"{', '.join(f'{k}={v}' for k, v in row['params'].items()) or 'default'} validation NLL {row['val_nll']:.4f}"
            + " (chosen)" * row["chosen"] for row in r["search"]))
    print(f"wrote {r['model']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .commands import predict_table

    interval = "auto" if args.interval is None else args.interval
    r = predict_table(args.model, args.data, args.out, interval, args.quantiles, args.samples,
                      args.drop_missing, args.seed, args.device, args.unknown_categories)
    print(f"wrote {r['rows']} rows to {r['out']} (added {', '.join(r['columns'])})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .commands import evaluate_table

    r = evaluate_table(args.model, args.data, args.target, args.report, args.drop_missing, args.device,
                       args.unknown_categories)
    width = max(len(k) for k in r)
    for key, value in r.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .commands import plot_row

    r = plot_row(args.model, args.data, args.row, args.out or f"row{args.row}.png")
    print(f"wrote {r['out']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebreg`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    set_fast_paths(keep_freed_memory=True)  # one short-lived process: its heap may keep freed memory
    commands = {"demo": _demo, "fit": _fit, "predict": _predict, "evaluate": _evaluate, "plot": _plot}
    try:
        return commands[args.command](args)
    except (ValueError, OSError) as err:
        print(f"ebreg: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit(1) after its clean-up
        print("ebreg: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
