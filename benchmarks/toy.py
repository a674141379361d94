"""Every method of the paper on its two 1-D toy problems, many seeds, resumable.

    python -m benchmarks.toy [--datasets toy1,toy2] [--methods nce_fixed,joint_nce] [--seeds 0,1]
                             [--quick] [--redo-older] [--jobs 2] [--out benchmarks/results]

Each run (dataset, method, K, seed) appends one record to ``OUT/toy.json`` as soon as it
finishes, with the git tree of ``ebreg/`` that made it, and is skipped when its record exists
(with ``--redo-older``: a record of the same library code), so the table can be finished over
several sessions. ``OUT/toy.md`` and one density figure per (dataset, method, K) are rebuilt at the
end. Toy 1 is scored by the KL to the true density (docs/protocols.md §4), toy 2 by the test NLL
with each density normalised on 8192 grid points over [-12.5, 12.5]; MDNs and proposals
by their exact densities. A run whose loss or metric is not finite is kept as diverged.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, SHARED_DATA, load_records, merge_records
from benchmarks.provenance import library_version
from benchmarks.toy_report import write_report

DEFAULT_DATA = SHARED_DATA / "toy"

#: (method, K, seeds): the issue's plan; fixed-proposal methods have no K
PLAN: list[tuple[str, int | None, int]] = [
    ("nce_fixed", None, 10), ("mlis_fixed", None, 5), ("nceplus_fixed", None, 5),
    ("joint_mlis", 1, 5), ("joint_mlis", 4, 10), ("joint_mlis", 16, 5),
    ("joint_nce", 1, 5), ("joint_nce", 4, 10), ("joint_nce", 16, 5),
    ("mdn", 4, 10), ("mdn_teacher", 4, 10),
    ("joint_mlis+wide", 4, 10), ("joint_nce+wide", 4, 10),
]
QUICK = [("nce_fixed", None, 1), ("joint_nce", 4, 1), ("mdn", 4, 1)]

#: improved configurations of ours, run as ``<method>+<variant>``: the reference budget with
#: a 32-wide feature network (at width 10, some seeds lose most ReLU units of the feature
#: network early and end with features that are flat over x; see toy.md)
VARIANTS: dict[str, dict[str, Any]] = {"wide": {"feature_hidden": (32, 32)}}

#: fixed-proposal sigmas per dataset (the paper's); ML-IS on toy 1 used (0.2, 1.6) in BMVC
SIGMAS = {"toy1": (0.1, 0.8), "toy2": (0.4, 3.2)}
MLIS_SIGMAS = {"toy1": (0.2, 1.6), "toy2": (0.4, 3.2)}

def run_key(rec: dict[str, Any]) -> tuple:
    return (rec["dataset"], rec["method"], rec["K"], rec["seed"], rec.get("source"))


def _data(dataset: str, data_dir: Path):
    from ebreg.datasets import Toy1, Toy2, load_toy1_reference, load_toy2_reference

    if dataset == "toy1":
        path = data_dir / "toy1_train.npz"
        train = load_toy1_reference(path) if path.exists() else Toy1.sample(2000, 0)
        return train, None, "reference arrays" if path.exists() else "Toy1.sample(2000, 0)"
    if (data_dir / "toy2_test.npz").exists():
        parts = load_toy2_reference(data_dir)
        return parts["train"], parts["test"], "reference arrays"
    parts = Toy2.splits()
    return parts["train"], parts["test"], "Toy2.splits() (the recipe)"


def _score(dataset: str, score, test) -> float:
    import torch

    from ebreg.app.evaluation import TOY2_GRID, grid_nll, toy1_kl_to_truth
    from ebreg.datasets import Toy1

    if dataset == "toy1":
        return toy1_kl_to_truth(score, Toy1.true_log_prob)
    x = torch.as_tensor(test.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(test.y, dtype=torch.float32)
    return grid_nll(score, x, y, torch.linspace(*TOY2_GRID))


def _exact_nll(mdn_like, test) -> float:
    import torch

    x = torch.as_tensor(test.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(test.y, dtype=torch.float32).view(-1, 1)
    with torch.no_grad():
        return float(-mdn_like(x).log_prob(y).mean())


def _snis_report(ebm, test, seed: int) -> dict[str, float]:
    """SNIS test NLL at M = 1024 and 8192 and the SNIS mean's RMSE against the grid mean."""
    import torch

    from ebreg.app.evaluation import TOY2_GRID, grid_scores, scorer
    from ebreg.inference import log_likelihood, predict_mean

    x = torch.as_tensor(test.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(test.y, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    out = {f"snis_nll_m{m}": float(-log_likelihood(ebm, x, y, m, gen).mean()) for m in (1024, 8192)}
    grid = torch.linspace(*TOY2_GRID)
    w = torch.softmax(grid_scores(scorer(ebm), x, grid).double(), 0)
    grid_mean = (w * grid.double().unsqueeze(1)).sum(0)
    snis_mean = predict_mean(ebm, x, 8192, gen).squeeze(-1).double()
    out["snis_mean_rmse_vs_grid"] = float((snis_mean - grid_mean).pow(2).mean().sqrt())
    return out


def _figure(path: Path, dataset: str, panels_models: list[tuple[str, Any]]) -> None:
    import numpy as np
    import torch

    from ebreg.app.evaluation import grid_scores
    from ebreg.app.plotting import density_panels
    from ebreg.datasets import Toy1, Toy2

    lo, hi = (-3.0, 3.0) if dataset == "toy1" else (-6.0, 11.0)
    xs = torch.linspace(-3.0, 3.0, 300) if dataset == "toy1" else torch.linspace(0.0, 1.0, 300)
    ys = torch.linspace(lo, hi, 400)
    truth_fn = Toy1.true_log_prob if dataset == "toy1" else Toy2.true_log_prob
    with np.errstate(over="ignore"):
        truth = np.exp(truth_fn(xs.numpy()[None, :].astype(float), ys.numpy()[:, None].astype(float)))
    truth = np.minimum(truth, 10.0)  # toy 2's Beta zone has an integrable spike
    panels = [("true density", truth)]
    for title, score in panels_models:
        s = grid_scores(score, xs.view(-1, 1), ys)
        panels.append((title, (torch.softmax(s.double(), 0) / float(ys[1] - ys[0])).numpy()))
    density_panels(path, panels, xs.numpy(), ys.numpy())


def run_one(dataset: str, method: str, k: int | None, seed: int, data_dir: str, fig_dir: str | None
            ) -> list[dict[str, Any]]:
    """Train and score one run; returns its record(s) (joint runs add a proposal_only record)."""
    import torch

    torch.set_num_threads(1)
    from ebreg.app.evaluation import scorer
    from ebreg.config import ModelConfig, TrainConfig
    from ebreg.engine import NonFiniteLossError, fit

    train, test, source = _data(dataset, Path(data_dir))
    base_method, _, variant = method.partition("+")
    sigmas = MLIS_SIGMAS[dataset] if base_method == "mlis_fixed" else SIGMAS[dataset]
    model_cfg = ModelConfig(components=k or 4, **(VARIANTS[variant] if variant else {}))
    train_cfg = TrainConfig(method=base_method, seed=seed, fixed_sigmas=sigmas)
    x = torch.as_tensor(train.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(train.y, dtype=torch.float32).view(-1, 1)
    metric = "kl" if dataset == "toy1" else "nll"
    base = {"dataset": dataset, "method": method, "K": k, "seed": seed, "metric": metric,
            "config": {"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}}
    start = time.perf_counter()
    try:
        result = fit(model_cfg, train_cfg, x, y, progress=False)
    except NonFiniteLossError as err:
        seconds = time.perf_counter() - start
        rec = {**base, "value": math.nan, "seconds": seconds, "diverged": True, "error": str(err)}
        return [rec] + ([{**rec, "method": "proposal_only", "source": method}]
                        if base_method.startswith("joint") else [])
    seconds = result.train_seconds
    module = result.module
    records = []
    models = []
    if base_method in ("mdn", "mdn_teacher"):
        value = _score(dataset, scorer(module.mdn), test) if dataset == "toy1" else _exact_nll(module.mdn, test)
        models.append((f"{method} (MDN)", scorer(module.mdn)))
    else:
        value = _score(dataset, scorer(module.ebm), test)
        models.append((f"{method} EBM", scorer(module.ebm)))
    rec = {**base, "value": value, "seconds": seconds, "diverged": not math.isfinite(value),
           "data": source}
    if base_method == "joint_nce" and k == 4 and dataset == "toy2":
        rec.update(_snis_report(module.ebm, test, seed))
    records.append(rec)
    if base_method.startswith("joint"):
        q = scorer(module.ebm, proposal=True)
        if dataset == "toy1":
            q_value = _score(dataset, q, test)
        else:
            q_value = _exact_nll(lambda xx: module.ebm.proposal_distribution(module.ebm.features(xx)), test)
        records.append({**base, "method": "proposal_only", "source": method, "value": q_value,
                        "seconds": seconds, "diverged": not math.isfinite(q_value), "data": source})
        models.append(("its proposal", q))
    if fig_dir is not None and seed == 0:
        name = f"{dataset}_{method}" + (f"_K{k}" if k else "") + ".png"
        _figure(Path(fig_dir) / name, dataset, models)
    return records


def _order(rec: dict[str, Any]) -> tuple:
    return rec["dataset"], rec["method"], rec.get("source") or "", rec["K"] or 0, rec["seed"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="toy1,toy2")
    p.add_argument("--methods", default=None, help="comma-separated subset of the plan's methods")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: the plan's count)")
    p.add_argument("--quick", action="store_true", help="1 seed of nce_fixed, joint_nce K=4 and mdn")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--redo-older", action="store_true",
                   help="redo runs whose record was made by other library code (ebreg/'s git tree)")
    args = p.parse_args(argv)
    library = library_version()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "toy_figures"
    fig_dir.mkdir(exist_ok=True)
    path = out / "toy.json"
    records = load_records(path)
    done = {(r["dataset"], r["method"], r["K"], r["seed"]) for r in records
            if not args.redo_older or r.get("library") == library}
    plan = QUICK if args.quick else PLAN
    methods = set(args.methods.split(",")) if args.methods else None
    todo = []
    for dataset in args.datasets.split(","):
        for method, k, n_seeds in plan:
            if methods and method not in methods:
                continue
            seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else range(n_seeds)
            todo += [(dataset, method, k, s) for s in seeds if (dataset, method, k, s) not in done]
    print(f"{len(todo)} runs to do ({len(done)} already recorded) -> {path}", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, *t, args.data_dir, str(fig_dir)): t for t in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            new = [{**r, "library": library} for r in fut.result()]
            merge_records(path, new, run_key, _order)
            head = new[0]
            print(f"[{i}/{len(todo)}] {head['dataset']} {head['method']} K={head['K']} seed={head['seed']}: "
                  f"{head['metric']}={head['value']:.4f} ({head['seconds']:.0f} s)", flush=True)
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    write_report(load_records(path), out / "toy.md", " ".join(["python -m benchmarks.toy", *(argv or sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
