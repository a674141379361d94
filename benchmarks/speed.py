"""Training and prediction speed against the machine's own matrix-multiply rate.

    python -m benchmarks.speed [--threads 2] [--epochs 5] [--repeats 5] [--out benchmarks/results] [--skip-million]

Measures, in one process (so every figure is a ratio to the same machine state):
* the float32 matmul rate (1024 x 1024 products): the machine's practical peak, probed
  again before every timed training run (this VM's speed drifts by tens of per cent within
  minutes, so each run is divided by the rate measured just before it);
* seconds per training epoch for the reference toy configuration (toy 1, 2000 rows,
  widths 10, batch 32, M = 1024, joint_nce) and a tabular one (power-plant sized: 8611
  rows, 4 inputs, widths 128/64, batch 32, M = 1024), ``--repeats`` runs each; for the toy
  configuration also with each speed path of ``ebreg.fast_paths`` off in turn and all of
  them off, (in a subprocess, ``EBREG_KEEP_MALLOC=0``) with glibc's default malloc settings,
  at M = 8 (what an epoch costs whatever M is; the default minus it is the part growing
  with M), and against the same training computed as the official code does
  (``reference_step.py``);
* the floor: the energy head's FLOPs per epoch (forward + backward = 3 x forward, over
  every candidate) divided by the matmul rate, and each epoch time as a multiple of it
  (median and worst over the runs);
* prediction: SNIS mean and 90 % interval for 10^4 rows at M = 1024 (``--repeats`` rounds),
  and the peak memory of the SNIS mean for 10^6 rows (in a subprocess).
Writes ``OUT/speed.json`` and ``OUT/speed.md``, and appends this invocation's toy runs to
``OUT/speed_history.json`` (with the git tree of ``ebreg/``): ``speed.md`` then also pools every
recorded toy run of the same library code, so that slow and fast spells of the VM all count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, ROOT


def matmul_gflops(size: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def cpu_model() -> str:
    """The CPU as ``/proc/cpuinfo`` names it (with family, model and whether it has AVX-512),
    or what ``platform`` knows where that file is missing."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]  # the first processor's block
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    avx = "AVX-512" if "avx512f" in info.get("flags", "").split() else "no AVX-512"
    return f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')}, {avx})"


def head_flops_per_candidate(model_cfg) -> int:  # noqa: ANN001
    """Forward multiply-adds x 2 of the per-candidate layers of the energy head."""
    widths = [model_cfg.target_dim, *model_cfg.target_hidden]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    macs += widths[-1] * model_cfg.joint_width  # the u part of the joint layer
    macs += model_cfg.residual_blocks * model_cfg.joint_width**2 + model_cfg.joint_width
    return 2 * macs


def without_one_optimisation() -> dict[str, Callable[[], ContextManager[Any]]]:
    """The toy variants: each turns speed paths off through ``ebreg.fast_paths`` while entered."""
    from ebreg import fast_paths

    return {
        "row-major head": lambda: fast_paths(feature_major_head=False),
        "one product per layer": lambda: fast_paths(batched_head=False),
        "head backward by autograd": lambda: fast_paths(head_backward=False),
        "mixture backward by autograd": lambda: fast_paths(mixture_backward=False),
        "joint_nce's losses by two log-sum-exps": lambda: fast_paths(fused_joint_nce=False),
        "Adam over each parameter tensor": lambda: fast_paths(flat_adam=False),
        "every speed path off": lambda: fast_paths(False, keep_freed_memory=True),
    }


def epoch_seconds(model_cfg, x: torch.Tensor, y: torch.Tensor, epochs: int,  # noqa: ANN001
                  num_samples: int = 1024, **trainer_kwargs: Any) -> float:
    """Seconds per epoch of a seed-0 fit at M = ``num_samples`` (``trainer_kwargs`` go to
    Lightning's Trainer)."""
    from ebreg.config import TrainConfig
    from ebreg.engine import fit

    config = TrainConfig(epochs=epochs, seed=0, num_samples=num_samples)
    result = fit(model_cfg, config, x, y, progress=False, **trainer_kwargs)
    return result.train_seconds / epochs


#: the toy variant at M = 8: what an epoch costs whatever M is (per-step overhead, n = 32 work)
FEW_SAMPLES = "M = 8 candidates per example instead of 1024"
#: the toy variant computed as the official code does (benchmarks/reference_step.py)
REFERENCE_STYLE = "reference-style step (the official code's computation, plain loop)"

Run = Callable[[], tuple[float, float]]  # one timed run: (seconds per epoch, GFLOP/s probed just before)


def in_process(model_cfg, x: torch.Tensor, y: torch.Tensor, epochs: int,  # noqa: ANN001
               context: Callable[[], ContextManager[None]] = nullcontext, num_samples: int = 1024) -> Run:
    """A run here: a fresh matmul probe, then ``epochs`` epochs at M = ``num_samples`` under ``context``."""
    def run() -> tuple[float, float]:
        gflops = matmul_gflops(seconds=0.5)
        with context():
            return epoch_seconds(model_cfg, x, y, epochs, num_samples), gflops
    return run


def reference_style(x: torch.Tensor, y: torch.Tensor, epochs: int) -> Run:
    """A run of :func:`reference_step.reference_epoch_seconds`: a fresh probe, then ``epochs`` epochs."""
    from benchmarks.reference_step import reference_epoch_seconds

    def run() -> tuple[float, float]:
        gflops = matmul_gflops(seconds=0.5)
        return reference_epoch_seconds(x, y, epochs), gflops
    return run


def timed_runs(repeats: int, variants: dict[str, Run]) -> dict[str, list[tuple[float, float]]]:
    """``repeats`` rounds of one run of every variant, interleaved: ``{variant: [run, ...]}``."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            runs[name].append(run())
    return runs


def multiple_of_floor(seconds: float, gflops: float, head_gflop: float) -> float:
    """An epoch's seconds over its floor: the head's GFLOP per epoch at the probed GFLOP/s."""
    return seconds / (head_gflop / gflops)


def summary(runs: list[tuple[float, float]], flops: float) -> dict[str, Any]:
    """Median and worst seconds per epoch and multiples of the floor, each run against its own probe."""
    multiples = [multiple_of_floor(t, g, flops / 1e9) for t, g in runs]
    seconds = [t for t, _ in runs]
    return {"epoch_s": statistics.median(seconds), "epoch_s_worst": max(seconds),
            "multiple_of_floor": statistics.median(multiples), "multiple_of_floor_worst": max(multiples),
            "gflops": statistics.median(g for _, g in runs), "runs": [list(r) for r in runs]}


def training_row(name: str, model_cfg, x: torch.Tensor, y: torch.Tensor, repeats: int,  # noqa: ANN001
                 variants: dict[str, Run], num_samples: int = 1024) -> dict[str, Any]:
    flops = 3 * head_flops_per_candidate(model_cfg) * len(x) * num_samples
    epoch_seconds(model_cfg, x[:256], y[:256], 1)  # warm-up: first-call costs out of the timings
    runs = timed_runs(repeats, variants)
    out = {name_: summary(r, flops) for name_, r in runs.items()}
    for name_, r in runs.items():  # each round ran every variant back to back: compare within rounds
        ratios = [(t / g) / (t0 / g0) for (t, g), (t0, g0) in zip(r, runs["default"])]
        out[name_]["vs_default"] = statistics.median(ratios)
        out[name_]["vs_default_range"] = [min(ratios), max(ratios)]
    best = out.pop("default")
    if FEW_SAMPLES in runs:  # the part of each round's epoch that grows with M, over the floor
        grown = [multiple_of_floor(t - t8, g, flops / 1e9) for (t, g), (t8, _) in zip(runs["default"], runs[FEW_SAMPLES])]
        best["growing_with_m_multiple"] = statistics.median(grown)
        best["growing_with_m_multiple_range"] = [min(grown), max(grown)]
    return {"config": name, "rows": len(x), **best, "examples_per_s": len(x) / best["epoch_s"],
            "head_gflop_per_epoch": flops / 1e9, "floor_s": flops / (best["gflops"] * 1e9), "variants": out}


def toy_data(rows: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy-1 rows (seed 0) as float32 ``(rows, 1)`` inputs and targets."""
    from ebreg.datasets import Toy1

    toy = Toy1.sample(rows, 0)
    return (torch.as_tensor(toy.x, dtype=torch.float32).view(-1, 1),
            torch.as_tensor(toy.y, dtype=torch.float32).view(-1, 1))


DEFAULT_MALLOC = """
import json, torch
torch.set_num_threads({threads})
from ebreg.config import ModelConfig
from benchmarks.speed import epoch_seconds, in_process, toy_data
x, y = toy_data()
epoch_seconds(ModelConfig(), x[:256], y[:256], 1)
print(json.dumps(in_process(ModelConfig(), x, y, {epochs})()))
"""


def default_malloc(threads: int, epochs: int) -> Run:
    """A toy run in a fresh process that leaves glibc's malloc at its defaults."""
    def run() -> tuple[float, float]:
        code = DEFAULT_MALLOC.format(threads=threads, epochs=epochs)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=ROOT, env={**os.environ, "EBREG_KEEP_MALLOC": "0"})
        seconds, gflops = json.loads(out.stdout.strip().splitlines()[-1])
        return seconds, gflops
    return run


def prediction_row(model, rows: int, repeats: int, num_samples: int = 1024) -> dict[str, Any]:  # noqa: ANN001
    """Median (and worst) over ``repeats`` rounds, each with fresh predictions: the SNIS mean and
    the 90 % interval from the same weighted samples."""
    from ebreg.config import ModelConfig
    from ebreg.predictive import SNISPredictive

    x = torch.rand(rows, 1) * 6 - 3
    gflops = matmul_gflops(seconds=0.5)
    times: dict[str, list[float]] = {"mean": [], "interval": []}
    queries = {"mean": lambda d: d.mean(),  # draws and weighs the samples, kept for
               "interval": lambda d: d.interval(0.9)}  # the intervals: no further energies
    for _ in range(repeats):
        dist = SNISPredictive(model, x, num_samples, seed=0)
        for name, query in queries.items():
            start = time.perf_counter()
            query(dist)
            times[name].append(time.perf_counter() - start)
    together = [m + i for m, i in zip(times["mean"], times["interval"])]
    floor = prediction_floor_s(ModelConfig(), rows, num_samples, gflops)
    mean_s, median = statistics.median(times["mean"]), statistics.median
    return {"rows": rows, "num_samples": num_samples, "repeats": repeats, "mean_s": mean_s,
            "interval_s": median(times["interval"]),
            "mean_and_interval_s": median(together), "mean_and_interval_s_worst": max(together),
            "candidates_per_s": rows * num_samples / mean_s, "gflops": gflops, "floor_s": floor,
            "multiple_of_floor": median(together) / floor, "multiple_of_floor_worst": max(together) / floor}


def prediction_floor_s(model_cfg, rows: int, num_samples: int, gflops: float) -> float:  # noqa: ANN001
    """The energy head's forward FLOPs over every candidate at the matmul rate."""
    return head_flops_per_candidate(model_cfg) * rows * num_samples / (gflops * 1e9)


MILLION = """
import resource, time, torch
torch.set_num_threads({threads})
from ebreg.config import ModelConfig
from ebreg.ebm import ConditionalEBM
from ebreg.predictive import SNISPredictive


def peak_kb():
    # this process image's own peak (VmHWM): ru_maxrss also counts the parent's pages at the fork
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


model = ConditionalEBM.from_config(ModelConfig()).eval()
before = peak_kb()
x = torch.rand(1_000_000, 1) * 6 - 3
start = time.perf_counter()
mean = SNISPredictive(model, x, 1024, seed=0).mean
print(time.perf_counter() - start, before, peak_kb())
"""


def million_rows(threads: int) -> dict[str, Any]:
    from ebreg.config import ModelConfig

    gflops = matmul_gflops(seconds=0.5)
    out = subprocess.run([sys.executable, "-c", MILLION.format(threads=threads)],
                         capture_output=True, text=True, check=True)
    seconds, before, peak = out.stdout.split()
    floor = prediction_floor_s(ModelConfig(), 1_000_000, 1024, gflops)
    return {"rows": 1_000_000, "num_samples": 1024, "mean_s": float(seconds),
            "peak_rss_gb": int(peak) / 1024**2, "rss_before_gb": int(before) / 1024**2,
            "gflops": gflops, "floor_s": floor, "multiple_of_floor": float(seconds) / floor}


def append_history(path: Path, result: dict[str, Any], command: str) -> list[dict[str, Any]]:
    """Add this invocation's toy runs to the history file; return the whole history."""
    from ebreg.io import write_json

    history = json.loads(path.read_text()) if path.exists() else []
    toy = result["training"][0]
    history.append({"library": result["library"], "commit": result["commit"], "cpu": result["cpu"],
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "command": command, "head_gflop_per_epoch": toy["head_gflop_per_epoch"], "runs": toy["runs"]})
    write_json(path, history)
    return history


def main() -> int:
    from benchmarks.provenance import head_commit, library_version
    from ebreg import set_fast_paths

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5, help="epochs per timed toy run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per configuration and variant")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--skip-million", action="store_true", help="skip the 10^6-row memory run")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    set_fast_paths(keep_freed_memory=True)  # the benchmark's own process only
    from ebreg.config import ModelConfig

    x, y = toy_data()
    toy = ModelConfig()
    variants = {"default": in_process(toy, x, y, args.epochs),
                **{name: in_process(toy, x, y, args.epochs, off) for name, off in without_one_optimisation().items()},
                "glibc's default malloc": default_malloc(args.threads, args.epochs),
                FEW_SAMPLES: in_process(toy, x, y, args.epochs, num_samples=8),
                REFERENCE_STYLE: reference_style(x, y, args.epochs)}
    rows = [training_row("toy 1, reference (widths 10)", toy, x, y, args.repeats, variants)]
    gen = torch.Generator().manual_seed(0)
    xt = torch.randn(8611, 4, generator=gen)
    yt = (xt[:, :1] * 2 + torch.sin(xt[:, 1:2]) + 0.3 * torch.randn(8611, 1, generator=gen))
    tab_cfg = ModelConfig(input_dim=4, feature_hidden=(128, 128), target_hidden=(64, 64), joint_width=64,
                          proposal_hidden=(128,))
    rows.append(training_row("tabular, power-plant sized (widths 128/64)", tab_cfg, xt, yt, min(3, args.repeats),
                             {"default": in_process(tab_cfg, xt, yt, 1)}))
    from ebreg.ebm import ConditionalEBM

    model = ConditionalEBM.from_config(ModelConfig()).eval()
    prediction_row(model, 1000, 1)  # warm-up
    pred = prediction_row(model, 10_000, args.repeats)
    million = None if args.skip_million else million_rows(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "cpu": cpu_model(),
              "library": library_version(), "commit": head_commit(), "training": rows, "prediction_1e4": pred, "prediction_1e6": million}
    out = Path(args.out)
    from ebreg.io import write_json, write_text

    command = " ".join(["python -m benchmarks.speed", *sys.argv[1:]])
    write_json(out / "speed.json", result)
    history = append_history(out / "speed_history.json", result, command)
    text = report(result, command, history)
    write_text(out / "speed.md", text)
    print(text, flush=True)
    return 0


#: the CPU of history records from before :func:`cpu_model` was recorded
UNRECORDED_CPU = "not recorded"


def pooled_toy_lines(history: list[dict[str, Any]], library: str) -> list[str]:
    """speed.md's section on every recorded toy run: this library code's invocation by invocation
    and pooled, then each earlier library version pooled."""
    def multiples(h: dict[str, Any]) -> list[float]:
        return [multiple_of_floor(s, g, h["head_gflop_per_epoch"]) for s, g in h["runs"]]

    def row(label: str, records: list[dict[str, Any]], bold: bool = False) -> str:
        seconds = [s for h in records for s, _ in h["runs"]]
        mult = [m for h in records for m in multiples(h)]
        b = "**" if bold else ""
        return (f"| {label} | {len(mult)} | {b}{statistics.median(seconds):.3f}{b} ({max(seconds):.3f}) | "
                f"{b}{statistics.median(mult):.1f}{b} ({max(mult):.1f}) |")

    same = [h for h in history if h["library"] == library]
    cpus = list(dict.fromkeys(h.get("cpu", UNRECORDED_CPU) for h in same))
    lines = ["", f"## Toy 1 over every recorded invocation (this library code: `ebreg/` tree {library[:12]})", "",
             "The VM has slow and fast spells of minutes in which the 1024 x 1024 matmul probe hardly",
             "moves while the toy step does, so one invocation's median depends on its spell. Every",
             "invocation's toy runs are kept in `speed_history.json`; none is dropped. Runs are pooled",
             "per CPU: across CPU kinds the probe and the toy step do not scale alike, so neither the",
             "seconds nor the multiples of the floor of two kinds belong in one median.", "",
             "| invocation finished (UTC) | CPU | runs | s/epoch | multiple of floor |", "|---|---|---|---|---|"]
    for cpu in cpus:
        on_cpu = [h for h in same if h.get("cpu", UNRECORDED_CPU) == cpu]
        lines += [row(f"{h['when']} | {cpu}", [h]) for h in on_cpu]
        lines.append(row(f"**all of this code on this CPU** | {cpu}", on_cpu, bold=True))
    earlier = list(dict.fromkeys((h["library"], h.get("cpu", UNRECORDED_CPU)) for h in history
                                 if h["library"] != library))
    if earlier:
        lines += ["", "Earlier library versions (each pooled over its invocations on one CPU):", "",
                  "| `ebreg/` tree | CPU | invocations | runs | s/epoch | multiple of floor |", "|---|---|---|---|---|---|"]
        for lib, cpu in earlier:
            records = [h for h in history if h["library"] == lib and h.get("cpu", UNRECORDED_CPU) == cpu]
            commits = ", ".join(dict.fromkeys(h.get("commit", "?") for h in records))
            lines.append(f"| {lib[:12]} (at {commits}) | {cpu} | {len(records)} " + row("", records)[3:])
    return lines


def report(r: dict[str, Any], command: str, history: list[dict[str, Any]]) -> str:
    toy = r["training"][0]
    lines = [
        "# Speed", "",
        f"Made by `{command}` on {r['threads']} threads (torch {r['torch']}). The floor is the energy",
        "head's FLOPs per epoch (forward + backward, every candidate) at this machine's float32",
        "matmul rate (1024 x 1024 products), probed again right before every timed run; each run is",
        "divided by its own probe, because this VM's speed drifts by tens of per cent within minutes.",
        "Epoch times include everything Lightning does per step (sampling, proposal densities,",
        f"feature network, optimiser). Medians over {len(toy['runs'])} runs (worst in brackets); the last",
        "column lists every run in the order it ran.", "",
        "| configuration | rows | s/epoch | examples/s | head GFLOP/epoch | matmul GFLOP/s | floor s | multiple of floor "
        "| every run's multiple |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["training"]:
        each = ", ".join(f"{multiple_of_floor(s, g, t['head_gflop_per_epoch']):.1f}" for s, g in t["runs"])
        lines.append(f"| {t['config']} | {t['rows']} | {t['epoch_s']:.3f} ({t['epoch_s_worst']:.3f}) | "
                     f"{t['examples_per_s']:.0f} | {t['head_gflop_per_epoch']:.2f} | {t['gflops']:.1f} | "
                     f"{t['floor_s']:.4f} | {t['multiple_of_floor']:.1f} ({t['multiple_of_floor_worst']:.1f}) | {each} |")
    lines += ["", "Toy 1 without one optimisation at a time (in each round the default and every variant run",
              "once, one after another; each run against its own matmul probe; glibc's default malloc in a",
              "fresh subprocess per run, `EBREG_KEEP_MALLOC=0`; every variant is a public switch,",
              "`ebreg.fast_paths`):", "",
              "| variant | s/epoch | multiple of floor | vs default: median of the rounds' ratios (range) |",
              "|---|---|---|---|",
              f"| default | {toy['epoch_s']:.3f} ({toy['epoch_s_worst']:.3f}) | {toy['multiple_of_floor']:.1f} "
              f"({toy['multiple_of_floor_worst']:.1f}) | 1.00 |"]
    for name, v in toy["variants"].items():
        low, high = v["vs_default_range"]
        lines.append(f"| {name} | {v['epoch_s']:.3f} ({v['epoch_s_worst']:.3f}) | {v['multiple_of_floor']:.1f} "
                     f"({v['multiple_of_floor_worst']:.1f}) | {v['vs_default']:.2f} ({low:.2f}-{high:.2f}) |")
    if "growing_with_m_multiple" in toy:
        low, high = toy["growing_with_m_multiple_range"]
        lines += ["", f"At M = 8 the head's work is 1/128 of the default's, so that row (its multiple against the default's floor) is what an epoch costs "
                  "whatever M is: the per-step overhead (a few hundred dispatched operations, Lightning, Python) "
                  "and the work on the batch of 32 rows. The part of the epoch that grows with M, the default "
                  f"minus that row in each round, is {toy['growing_with_m_multiple']:.1f} times the floor "
                  f"(median of the rounds; {low:.1f}-{high:.1f})."]
    if REFERENCE_STYLE in toy["variants"]:
        v = toy["variants"][REFERENCE_STYLE]
        low, high = v["vs_default_range"]
        lines += ["", "The reference-style row is the same toy-1 joint-NCE training computed as the official code does "
                  "(`benchmarks/reference_step.py`: features copied to every candidate and a row-major joint layer, "
                  "mixture densities summed in linear space, K x M Gaussian draws, a plain loop with row-by-row "
                  "collation; written from docs/protocols.md's description, not the official code): a same-run yardstick "
                  "for the issue's 'about 4x the official code'. Ours is "
                  f"**{v['vs_default']:.2f} times as fast** (median of the rounds' ratios; {low:.2f}-{high:.2f})."]
    p = r["prediction_1e4"]
    lines += ["", "## Prediction (toy model, M = 1024)", "",
              f"- 10^4 rows (median of {p['repeats']} rounds, worst in brackets): SNIS mean {p['mean_s']:.2f} s, "
              f"90 % interval {p['interval_s']:.2f} s, together **{p['mean_and_interval_s']:.2f} s** "
              f"({p['mean_and_interval_s_worst']:.2f} s; {p['candidates_per_s'] / 1e6:.1f} M candidates/s; "
              f"{p['multiple_of_floor']:.1f} ({p['multiple_of_floor_worst']:.1f}) times the floor of {p['floor_s']:.3f} s "
              f"at {p['gflops']:.0f} GFLOP/s: the head's forward FLOPs over every candidate, evaluated once for both)."]
    if r.get("prediction_1e6"):
        m = r["prediction_1e6"]
        lines.append(f"- 10^6 rows: SNIS mean in {m['mean_s']:.1f} s ({m['multiple_of_floor']:.1f} times the floor of "
                     f"{m['floor_s']:.2f} s at {m['gflops']:.0f} GFLOP/s), peak resident memory "
                     f"**{m['peak_rss_gb']:.2f} GB** (of which {m['rss_before_gb']:.2f} GB before predicting: "
                     "Python, torch and the model).")
    lines += pooled_toy_lines(history, r["library"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
