"""What a fit costs: EBMRegressor against MDNRegressor and NGBoost, timed side by side.

    python -m benchmarks.cost [--datasets bostonHousing,concrete] [--splits 0,1,2] [--out benchmarks/results]

For boston, concrete, energy, wine and power (splits 0-2) and protein (split 0), in one
process with one thread, each split fits, one after another, ``EBMRegressor()`` (its default:
an ensemble of 5 below 2,000 rows), ``EBMRegressor(ensemble_size=1)``, ``MDNRegressor()`` and
NGBoost's defaults, in an order that rotates with the split, so that every estimator meets
the machine in the same state as the others. Each record holds the fit's wall time, the
epochs run (per member), the test NLL and the library code (git tree of ``ebreg/``) that made
it. ``cost.md`` gives, per dataset and library code, the ratios EBM / MDN and ensemble / one
member of the same split, as the median and the worst split.

A record is appended to ``OUT/cost.json`` as soon as its fit ends; a (dataset, split,
estimator, library) already recorded is skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SHARED_DATA, load_records, median_worst, merge_records
from benchmarks.provenance import head_commit, library_version

ESTIMATORS = ("ebm", "ebm_single", "mdn", "ngboost")
PLAN = {"bostonHousing": (0, 1, 2), "concrete": (0, 1, 2), "energy": (0, 1, 2), "wine-quality-red": (0, 1, 2),
        "power-plant": (0, 1, 2), "protein-tertiary-structure": (0,)}


def _estimator(name: str, seed: int) -> Any:
    from ebreg import EBMRegressor, MDNRegressor

    if name == "ebm":
        return EBMRegressor(random_state=seed)
    if name == "ebm_single":
        return EBMRegressor(ensemble_size=1, random_state=seed)
    if name == "mdn":
        return MDNRegressor(random_state=seed)
    from ngboost import NGBRegressor

    return NGBRegressor(random_state=seed, verbose=False)


def run(name: str, part: Any, split: int) -> dict[str, Any]:
    """Fit estimator ``name`` on a split's training rows; its wall time, epochs and test NLL."""
    import numpy as np

    est = _estimator(name, split)
    start = time.perf_counter()
    est.fit(part.x_train, part.y_train)
    seconds = time.perf_counter() - start
    if name == "ngboost":
        nll = float(-est.pred_dist(part.x_test).logpdf(part.y_test).mean())
        epochs = [int(getattr(est, "best_val_loss_itr", None) or est.n_estimators)]
    else:
        nll = float(-np.mean(est.log_likelihood(part.x_test, part.y_test)))
        epochs = [int(e) for e in est.n_epochs_]
    return {"seconds": seconds, "epochs": epochs, "nll": nll}


def _key(rec: dict[str, Any]) -> tuple:
    return rec["dataset"], rec["split"], rec["estimator"], rec["library"]


def report(records: list[dict[str, Any]], command: str) -> str:
    """``cost.md``: ratios per dataset and library code, median and worst split."""
    lines = ["# What a fit costs", "", f"Made by `{command}` (records in `cost.json`). One thread, the estimators of "
             "a split fitted one after another in an order that rotates with the split. Ratios are taken within a "
             "split, then summarised over splits as the median (worst).", "",
             "| library | dataset | splits | EBM / MDN | one member / MDN | ensemble / one member | NGBoost / MDN | "
             "EBM test NLL | MDN test NLL | epochs (EBM members; MDN) |", "|---|---|---|---|---|---|---|---|---|---|"]
    by = {_key(r): r for r in records}
    for library, dataset in sorted({(r["library"], r["dataset"]) for r in records}):
        splits = sorted({r["split"] for r in records if r["library"] == library and r["dataset"] == dataset})

        def ratio(a: str, b: str, splits: list[int] = splits, dataset: str = dataset, library: str = library) -> str:
            return median_worst([by[(dataset, s, a, library)]["seconds"] / by[(dataset, s, b, library)]["seconds"]
                                 for s in splits if (dataset, s, a, library) in by and (dataset, s, b, library) in by])

        def nll(name: str, splits: list[int] = splits, dataset: str = dataset, library: str = library) -> str:
            values = [by[(dataset, s, name, library)]["nll"] for s in splits if (dataset, s, name, library) in by]
            return f"{statistics.fmean(values):.3f}" if values else "–"

        epochs = "; ".join("/".join(str(e) for e in by[(dataset, s, "ebm", library)]["epochs"]) + " | "
                           + str(by[(dataset, s, "mdn", library)]["epochs"][0])
                           for s in splits if (dataset, s, "ebm", library) in by and (dataset, s, "mdn", library) in by)
        lines.append(f"| `{library[:10]}` | {dataset} | {len(splits)} | {ratio('ebm', 'mdn')} | "
                     f"{ratio('ebm_single', 'mdn')} | {ratio('ebm', 'ebm_single')} | {ratio('ngboost', 'mdn')} | "
                     f"{nll('ebm')} | {nll('mdn')} | {epochs.replace(' | ', ' vs ')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from ebreg.datasets import load_uci
    from ebreg.io import write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(SHARED_DATA / "uci"))
    p.add_argument("--datasets", default=",".join(PLAN))
    p.add_argument("--splits", default=None, help="comma-separated splits (default: the plan's)")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    library, out = library_version(), Path(args.out)
    path = out / "cost.json"
    done = {_key(r) for r in load_records(path)}
    names = args.estimators.split(",")
    command = " ".join(["python -m benchmarks.cost", *(argv if argv is not None else sys.argv[1:])])
    for dataset in args.datasets.split(","):
        data = load_uci(Path(args.data) / dataset)
        splits = [int(s) for s in args.splits.split(",")] if args.splits else PLAN[dataset]
        for split in splits:
            part = data.split(split)
            order = names[split % len(names):] + names[:split % len(names)]
            for name in order:
                if (dataset, split, name, library) in done:
                    continue
                rec = {"dataset": dataset, "split": split, "estimator": name, "library": library,
                       "commit": head_commit(), "rows": int(len(part.x_train)), **run(name, part, split)}
                merge_records(path, [rec], _key)
                print(f"{dataset} split {split} {name}: {rec['seconds']:.1f} s, nll {rec['nll']:.3f}", flush=True)
    write_text(out / "cost.md", report(load_records(path), command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
