"""Command line: ``ebreg demo`` (more commands build on the same library calls)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import METHODS

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebreg", description="Energy-based probabilistic regression.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on the toy-1 problem and compare with the true density")
    demo.add_argument("--out", required=True, help="folder for metrics.json and density.png")
    demo.add_argument("--epochs", type=_positive_int, default=75)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--method", choices=METHODS, default="joint_nce")
    demo.add_argument("--components", type=_positive_int, default=4, help="proposal components K")
    demo.add_argument("--data", default=None, help="optional .npz (x, y) to train on instead")
    demo.add_argument("--reference", action="store_true",
                      help="the official code's optimiser settings (constant lr 1e-3) instead of ours")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _demo(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebreg`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return {"demo": _demo}[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"ebreg: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
