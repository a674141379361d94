"""How many proposal candidates M does training need? One EBM per split, judged on its own
validation part (never the test rows), with its fit time beside an MDN's.

    python -m benchmarks.candidates [--datasets bostonHousing,concrete,energy] [--splits 0,1,2]
                                    [--samples 16,32,64,256] [--jobs 2]

For each split, ``EBMRegressor(ensemble_size=1, num_samples=M)`` for every M and
``MDNRegressor()`` are fitted on the split's training rows (one thread per worker). Each record
holds the validation NLL of the kept epoch (``best_val_nll_``, SNIS with 1024 samples: the
same yardstick for every M), the epochs run and the fit's wall time. ``candidates.md`` gives
per dataset and M the mean validation NLL, its difference to M = 256 paired by split, and the
fit time as a multiple of the same split's MDN fit (median, worst).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SHARED_DATA, load_records, median_worst, merge_records
from benchmarks.provenance import library_version


def run(data_dir: str, dataset: str, split: int, samples: int | None) -> dict[str, Any]:
    """One fit: an EBM with ``samples`` training candidates, or (None) the MDN."""
    import warnings

    import torch

    from ebreg import EBMRegressor, MDNRegressor
    from ebreg.datasets import load_uci

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", "EBMRegressor: |MDNRegressor: ")
    part = load_uci(Path(data_dir) / dataset).split(split)
    est = (MDNRegressor(random_state=split) if samples is None
           else EBMRegressor(ensemble_size=1, num_samples=samples, random_state=split))
    start = time.perf_counter()
    est.fit(part.x_train, part.y_train)
    return {"dataset": dataset, "split": split, "samples": samples, "seconds": time.perf_counter() - start,
            "val_nll": float(est.best_val_nll_[0]), "epochs": int(est.n_epochs_[0])}


def _key(rec: dict[str, Any]) -> tuple:
    return rec["dataset"], rec["split"], rec["samples"] or 0, rec["library"]


def report(records: list[dict[str, Any]], command: str) -> str:
    lines = ["# Training candidates M: validation NLL and fit time", "", f"Made by `{command}` (records in "
             "`candidates.json`). One EBM per split (`EBMRegressor(ensemble_size=1, num_samples=M)`), scored on its "
             "own validation part by SNIS with 1024 samples; the test rows are not used. Differences are paired by "
             "split against M = 256 (the default); times are multiples of the same split's `MDNRegressor()` fit, "
             "median (worst).", "",
             "| library | dataset | M | splits | validation NLL | vs M = 256 (worst) | fit / MDN fit | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    by = {_key(r): r for r in records}
    for library, dataset in sorted({(r["library"], r["dataset"]) for r in records}):
        for m in sorted({r["samples"] for r in records if r["samples"] and r["dataset"] == dataset}):
            rs = [r for r in records if r["library"] == library and r["dataset"] == dataset and r["samples"] == m]
            base = [(r, by.get((dataset, r["split"], 256, library))) for r in rs]
            diff = [r["val_nll"] - b["val_nll"] for r, b in base if b is not None]
            mdn = [r["seconds"] / by[(dataset, r["split"], 0, library)]["seconds"] for r in rs
                   if (dataset, r["split"], 0, library) in by]
            diff_cell = f"{statistics.fmean(diff):+.3f} ({max(diff):+.3f})" if diff else "–"
            lines.append(f"| `{library[:10]}` | {dataset} | {m} | {len(rs)} | "
                         f"{statistics.fmean(r['val_nll'] for r in rs):.3f} | {diff_cell} | {median_worst(mdn)} | "
                         f"{statistics.median(r['epochs'] for r in rs):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ebreg.io import write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(SHARED_DATA / "uci"))
    p.add_argument("--datasets", default="bostonHousing,concrete,energy")
    p.add_argument("--splits", default="0,1,2")
    p.add_argument("--samples", default="16,32,64,256")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    library, path = library_version(), Path(args.out) / "candidates.json"
    done = {_key(r) for r in load_records(path)}
    tasks = [(d, int(s), m) for d in args.datasets.split(",") for s in args.splits.split(",")
             for m in [None, *map(int, args.samples.split(","))] if (d, int(s), m or 0, library) not in done]
    print(f"{len(tasks)} fits to do -> {path}", flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, args.data, *t) for t in tasks]
        for fut in as_completed(futures):
            rec = {**fut.result(), "library": library}
            merge_records(path, [rec], _key)
            print(f"{rec['dataset']} split {rec['split']} M={rec['samples']}: val nll {rec['val_nll']:.3f}, "
                  f"{rec['seconds']:.1f} s, {rec['epochs']} epochs", flush=True)
    command = " ".join(["python -m benchmarks.candidates", *(argv if argv is not None else sys.argv[1:])])
    write_text(Path(args.out) / "candidates.md", report(load_records(path), command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
