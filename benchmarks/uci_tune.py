"""Choose the estimators' defaults on validation data only: the validation part that each
estimator carves from a training split (never the split's test rows).

    python -m benchmarks.uci_tune [--data DIR] [--datasets ...] [--splits 0,1] [--jobs 2]

For every (dataset, split, estimator, candidate setting) it fits once and records the best
validation NLL (``best_val_nll_``) to ``OUT/uci_tune.json`` (resumable), then prints the
median rank of each candidate per estimator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SHARED_DATA, one_hot_encoder

DEFAULT_DATA = SHARED_DATA / "uci"

#: candidate changes to the estimators' current defaults
CANDIDATES: dict[str, dict[str, Any]] = {
    "default": {},
    "lr1e-3": {"lr": 1e-3},
    "wide128": {"hidden": (128, 128), "energy_width": 64},
    "narrow32": {"hidden": (32, 32), "energy_width": 16},
    "patience40": {"patience": 40, "epochs": 300},
    "batch32": {"batch_size": 32},
    "head128": {"energy_width": 128},
    "head64": {"energy_width": 64},
    "mix8": {"components": 8},
    "onehot8": {},  # the defaults on inputs one-hot encoded where a column has at most 8 values
}


def run(data_dir: str, dataset: str, split: int, estimator: str, candidate: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from ebreg.datasets import load_uci
    from ebreg.estimators import EBMRegressor, MDNRegressor

    part = load_uci(Path(data_dir) / dataset).split(split)
    cls = EBMRegressor if estimator == "ebm" else MDNRegressor
    start = time.perf_counter()
    x_train = part.x_train
    if candidate == "onehot8":  # the validation part is carved from these rows by the estimator
        x_train = one_hot_encoder(x_train).transform(x_train)
    est = cls(random_state=split, ensemble_size=1, **CANDIDATES[candidate]).fit(x_train, part.y_train)
    return {"dataset": dataset, "split": split, "estimator": estimator, "candidate": candidate,
            "val_nll": est.best_val_nll_[0], "best_epoch": est.best_epoch_[0], "seconds": time.perf_counter() - start}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--datasets", default="bostonHousing,concrete,energy,wine-quality-red,power-plant")
    p.add_argument("--splits", default="0,1")
    p.add_argument("--estimators", default="ebm,mdn")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    path = Path(args.out) / "uci_tune.json"
    records = json.loads(path.read_text()) if path.exists() else []
    key = lambda r: (r["dataset"], r["split"], r["estimator"], r["candidate"])  # noqa: E731
    done = {key(r) for r in records}
    todo = [(d, int(s), e, c) for d in args.datasets.split(",") for s in args.splits.split(",")
            for e in args.estimators.split(",") for c in args.candidates.split(",") if (d, int(s), e, c) not in done]
    print(f"{len(todo)} fits to do", flush=True)
    from ebreg.io import write_json

    with ProcessPoolExecutor(args.jobs) as pool:
        for fut in as_completed([pool.submit(run, args.data, *t) for t in todo]):
            rec = fut.result()
            records.append(rec)
            write_json(path, sorted(records, key=key))
            print(rec, flush=True)
    groups: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in records:
        groups[(r["dataset"], r["split"], r["estimator"])][r["candidate"]] = r["val_nll"]
    for est in args.estimators.split(","):
        ranks: dict[str, list[int]] = defaultdict(list)
        for (_, _, e), by in groups.items():
            if e == est:
                for rank, c in enumerate(sorted(by, key=by.get), 1):
                    ranks[c].append(rank)
        for c, r in sorted(ranks.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"{est} {c}: median rank {statistics.median(r)} over {len(r)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
