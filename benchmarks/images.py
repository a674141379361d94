"""Image regression on procedural data: EBM with learned proposal vs MDN vs MDN with teacher.

    python -m benchmarks.images [--tasks cells,bars] [--methods joint_nce,joint_nce+nll,mdn,mdn_teacher,
                                   joint_nce+proposal_features,joint_nce+residual,joint_nce+mdn_refined]
                                [--seeds 0] [--epochs 30] [--jobs 1] [--out benchmarks/results]

``joint_nce+nll`` is ``joint_nce`` whose proposal also reads the features without a stop-gradient
and adds its NLL at the targets to its loss (``proposal_nll_weight=1``): the feature network then
learns from the proposal's NLL as well as from the EBM's NCE loss. ``joint_nce+proposal_features``
(only when asked for) is ``joint_nce+nll`` with the energy head reading detached features
(``detach_energy_features=True``): the features learn from the proposal alone, as an MDN's do.
``joint_nce+residual`` is ``joint_nce+proposal_features`` with ``ModelConfig(residual_energy=True)``:
the score is the head's output plus ``sg[log q]``, so the EBM learns a correction of its proposal
and starts from p = q. ``joint_nce+mdn_refined`` is that without the KL term
(``proposal_kl_weight=0``): the proposal and the features are trained by the NLL alone, and with
``residual_energy`` they are initialised as the stand-alone MDN of the same seed is, so the
proposal follows the ``mdn`` run's trajectory exactly (its record's ``proposal_nll`` equals that
run's NLL when both keep the same epoch) and the EBM is that MDN times a learned correction.

Tasks (``ebreg.datasets.images``): ``cells`` counts 1-20 Gaussian blobs in 64 x 64 images;
the integer count is dequantised (uniform noise of width 1 added to train, validation and
test targets) so that densities compare without spikes on the integers. ``bars``: the
angle in degrees of a bar that looks the same after a half turn (two modes per image).
3000 training, 500 validation and 1000 test images per seed; the small CNN backbone
(``ModelConfig(backbone="cnn")``), at most ``--epochs`` epochs with early stopping on the
validation NLL (patience 8). Test NLL: exact for MDNs, SNIS with M = 4096 for the EBM, at the
temperature fitted on the validation images (as ``EBMRegressor`` does; ``nll_t1``: at T = 1).
Each (task, method, seed) appends a record to ``OUT/images.json`` and is skipped when present.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS
from ebreg.config import REFINE_MDN_MODEL, REFINE_MDN_TRAIN

TASKS = ("cells", "bars")
METHODS = ("joint_nce", "joint_nce+nll", "mdn", "mdn_teacher", "joint_nce+proposal_features", "joint_nce+residual",
           "joint_nce+mdn_refined")
#: methods whose test-time model is the EBM (calibrated and scored by SNIS)
EBM_METHODS = ("joint_nce", "joint_nce+nll", "joint_nce+proposal_features", "joint_nce+residual",
           "joint_nce+mdn_refined")
#: methods that are a library method with changed settings: (method, ModelConfig and TrainConfig changes)
VARIANTS = {
    "joint_nce+nll": ("joint_nce", {"detach_proposal_features": False}, {"proposal_nll_weight": 1.0}),
    "joint_nce+proposal_features": ("joint_nce", {"detach_proposal_features": False, "detach_energy_features": True},
                                    {"proposal_nll_weight": 1.0}),
    "joint_nce+residual": ("joint_nce", REFINE_MDN_MODEL, {"proposal_nll_weight": 1.0}),
    "joint_nce+mdn_refined": ("joint_nce", REFINE_MDN_MODEL, REFINE_MDN_TRAIN),
}


def _data(task: str, seed: int):  # noqa: ANN202
    import numpy as np

    from ebreg.datasets import bar_orientations, cell_counts

    make = cell_counts if task == "cells" else bar_orientations
    parts = [make(n, 1000 * seed + k) for k, n in enumerate((3000, 500, 1000))]
    if task == "cells":
        rng = np.random.RandomState(seed)
        parts = [type(p)(p.x, p.y + rng.uniform(-0.5, 0.5, p.y.shape)) for p in parts]
    return parts


def run(task: str, method: str, seed: int, epochs: int, energy_width: int = 32) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from ebreg.calibration import fit_temperature
    from ebreg.config import ModelConfig, TrainConfig
    from ebreg.engine import fit
    from ebreg.inference import log_likelihood, predict_mean

    train, val, test = _data(task, seed)
    t = [torch.as_tensor(a, dtype=torch.float32) for a in (train.x, train.y, val.x, val.y, test.x, test.y)]
    base, model_changes, train_changes = VARIANTS.get(method, (method, {}, {}))
    model_cfg = ModelConfig(backbone="cnn", feature_hidden=(64,), target_hidden=(32, 32), joint_width=energy_width,
                            proposal_hidden=(64,), components=4, **model_changes)
    train_cfg = TrainConfig(method=base, epochs=epochs, batch_size=32, num_samples=256, patience=8, seed=seed,
                            **train_changes)
    start = time.perf_counter()
    result = fit(model_cfg, train_cfg, *t[:4], progress=False)
    seconds = time.perf_counter() - start
    module = result.module
    x, y = t[4], t[5]
    calibration = {}
    with torch.no_grad():
        if module.mdn is not None:
            q = module.mdn(x)
            nll, mean = float(-q.log_prob(y.view(-1, 1)).mean()), q.mean[:, 0]
        else:
            def test_nll() -> float:
                return float(-log_likelihood(module.ebm, x, y, 4096, torch.Generator().manual_seed(seed)).mean())

            proposal = module.ebm.proposal_distribution(module.ebm.features(x))
            calibration["proposal_nll"] = float(-proposal.log_prob(y.view(-1, 1)).mean())
            calibration["nll_t1"] = test_nll()
            temperature = fit_temperature(module.ebm, t[2], t[3], 1024, torch.Generator().manual_seed(seed))
            module.ebm.temperature.fill_(temperature)
            nll, calibration["temperature"] = test_nll(), temperature
            mean = predict_mean(module.ebm, x, 4096, torch.Generator().manual_seed(seed))[:, 0]
    return {"task": task, "method": method, "seed": seed, "epochs": epochs, "energy_width": energy_width, "nll": nll, **calibration, "mae": float((mean - y).abs().mean()),
            "best_epoch": result.best_epoch, "epochs_run": int(module.current_epoch), "seconds": seconds,
            "seconds_per_epoch": seconds / max(1, module.current_epoch)}


def report(records: list[dict[str, Any]]) -> str:
    commands = "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in records))
    lines = ["# Image regression (procedural data, small CNN, 2 CPU cores)", "",
             f"Made by {commands} (records in `images.json`, each with its command). Test NLL (lower is better; cells: on",
             "dequantised counts; bars: angle in degrees) and MAE of the predictive mean. For bars the",
             "mean of a two-mode density is not a useful point prediction; the NLL is the score there.",
             "Seconds are wall time, 1 thread per run, often beside other benchmark processes on the",
             "same 2 cores: treat them as upper bounds.", "",
             "EBM rows with a temperature were calibrated on the validation images (T fitted as",
             "`EBMRegressor` does); their NLL at T = 1 is the same network uncalibrated. EBM rows",
             "without one were made before calibration existed (their NLL is at T = 1).", "",
             "`proposal NLL`: the EBM's own proposal scored as a density (an MDN) on the same test images, and in",
             "brackets the EBM's NLL minus it (mean, worst; number of seeds recorded with it).", "",
             "| task | method | max epochs | energy width | seeds | test NLL (mean, worst) | NLL at T = 1 | T | proposal NLL (EBM - proposal) | MAE | best epoch | s/epoch (3000 images) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    budgets = sorted({(r.get("epochs", 30), r.get("energy_width", 32)) for r in records})
    for task in TASKS:
        for method in METHODS:
            for budget in budgets:
                for calibrated in (False, True):
                    rs = [r for r in records if r["task"] == task and r["method"] == method
                          and (r.get("epochs", 30), r.get("energy_width", 32)) == budget
                          and ("temperature" in r) == calibrated]
                    if rs:
                        lines.append(_row(task, method, budget, rs))
    return "\n".join(lines + _verdict(records) + _per_seed(records)) + "\n"


def _verdict(records: list[dict[str, Any]]) -> list[str]:
    """Each calibrated EBM with 6 or more seeds against the MDN on the same seeds and budget,
    paired: mean difference ± standard error and whether it wins (by more than one SE)."""
    lines = ["", "## The EBMs with 6 or more seeds against the MDN (paired by seed, same epochs)", "",
             "| task | method | epochs | energy width | seeds | EBM − MDN (mean ± SE, worst) | verdict |", "|---|---|---|---|---|---|---|"]
    mdn = {(r["task"], r.get("epochs", 30), r["seed"]): r["nll"] for r in records if r["method"] == "mdn"}
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        if "temperature" in r:
            groups.setdefault((r["task"], r["method"], r.get("epochs", 30), r.get("energy_width", 32)), {})[r["seed"]] = r["nll"]
    for (task, method, epochs, width), by_seed in sorted(groups.items()):
        diff = [nll - mdn[(task, epochs, seed)] for seed, nll in by_seed.items() if (task, epochs, seed) in mdn]
        if len(diff) < 6:
            continue
        mean, se = statistics.fmean(diff), statistics.stdev(diff) / len(diff) ** 0.5
        verdict = "beats the MDN" if mean + se < 0 else "does not beat the MDN"
        lines.append(f"| {task} | {method} | {epochs} | {width} | {len(diff)} | {mean:+.3f} ± {se:.3f} ({max(diff):+.3f}) | {verdict} |")
    return lines


def _per_seed(records: list[dict[str, Any]]) -> list[str]:
    """Cells at 30 epochs, calibrated EBMs and MDNs: test NLL per seed, the MDN's first."""
    rs = [r for r in records if r["task"] == "cells" and r.get("epochs", 30) == 30
          and (r["method"] == "mdn" or "temperature" in r)]
    columns = sorted({(r["method"], r.get("energy_width", 32)) for r in rs}, key=lambda c: (c[0] != "mdn", c))
    seeds = sorted({r["seed"] for r in rs})
    lines = ["", "## Cells per seed (30 epochs; EBMs calibrated)", "",
             "| seed | " + " | ".join(m if m == "mdn" else f"{m} (width {w})" for m, w in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for seed in seeds:
        cells = []
        for method, width in columns:
            hit = [r for r in rs if r["seed"] == seed and r["method"] == method and r.get("energy_width", 32) == width]
            cells.append(f"{hit[-1]['nll']:.3f}" if hit else "")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return lines


def _row(task: str, method: str, budget: tuple[int, int], rs: list[dict[str, Any]]) -> str:
    nll = [r["nll"] for r in rs]
    width = budget[1] if method != "mdn" else "–"
    t1, temp, own = "–", "–", "–"
    if "temperature" in rs[0]:
        t1 = f"{statistics.fmean(r['nll_t1'] for r in rs):.3f}"
        temp = ", ".join(f"{r['temperature']:.2f}" for r in rs)
    paired = [r for r in rs if "proposal_nll" in r]
    if paired:
        gain = [r["nll"] - r["proposal_nll"] for r in paired]
        own = (f"{statistics.fmean(r['proposal_nll'] for r in paired):.3f} "
               f"({statistics.fmean(gain):+.3f}, worst {max(gain):+.3f}; {len(paired)})")
    return (f"| {task} | {method} | {budget[0]} | {width} | {len(rs)} | {statistics.fmean(nll):.3f} ({max(nll):.3f}) | "
            f"{t1} | {temp} | {own} | {statistics.fmean(r['mae'] for r in rs):.3f} | {', '.join(str(r['best_epoch']) for r in rs)} | "
            f"{statistics.fmean(r['seconds_per_epoch'] for r in rs):.1f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--methods", default=",".join(METHODS[:4]))
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--energy-width", type=int, default=32, help="width of the energy head's joint layers")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    from ebreg.io import write_json, write_text

    path = Path(args.out) / "images.json"
    records = json.loads(path.read_text()) if path.exists() else []
    # EBM records from before calibration are redone when asked for
    done = {(r["task"], r["method"], r["seed"], r.get("epochs", 30), r.get("energy_width", 32)) for r in records
            if r["method"] not in EBM_METHODS or "temperature" in r}
    todo = [(t, m, int(s)) for t in args.tasks.split(",") for m in args.methods.split(",")
            for s in args.seeds.split(",") if (t, m, int(s), args.epochs, args.energy_width) not in done]
    command = " ".join(["python", "benchmarks/images.py", *sys.argv[1:]])
    print(f"{len(todo)} runs to do", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        for fut in as_completed([pool.submit(run, *t, args.epochs, args.energy_width) for t in todo]):
            records.append({**fut.result(), "command": command})
            write_json(path, sorted(records, key=lambda r: (r["task"], r["method"], r.get("epochs", 30), r["seed"])))
            print(records[-1], flush=True)
    write_text(Path(args.out) / "images.md", report(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
