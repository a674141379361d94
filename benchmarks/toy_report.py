"""Markdown summary of ``toy.json``: per method and dataset, with the reference beside ours."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import TOY_REFERENCE as REFERENCE
from benchmarks.common import TRUE_TOY2_NLL


def _fmt(v: float) -> str:
    return "∞/NaN" if not math.isfinite(v) else f"{v:.4f}"


def _rows(records: list[dict[str, Any]]) -> list[str]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["dataset"], r["method"], r.get("source"), r["K"])].append(r)
    lines = []
    for (dataset, method, source, k), runs in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or "", g[0][3] or 0)):
        values = [r["value"] for r in runs]
        finite = [v for v in values if math.isfinite(v)]
        diverged = sum(r["diverged"] for r in runs)
        name = method if source is None else f"{method} (of {source})"
        median = statistics.median(values) if not diverged else statistics.median(
            sorted(finite) + [math.inf] * diverged)
        worst = max(values) if not diverged else math.inf
        cells = [dataset, name, "–" if k is None else str(k), str(len(runs)), str(diverged), _fmt(median),
                 _fmt(statistics.fmean(finite)) if finite else "–", _fmt(min(finite)) if finite else "–",
                 _fmt(worst), f"{statistics.fmean(r['seconds'] for r in runs):.0f}",
                 REFERENCE.get((dataset, method, k), "") if source is None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _snis(records: list[dict[str, Any]]) -> list[str]:
    runs = [r for r in records if "snis_nll_m1024" in r and not r["diverged"]]
    if not runs:
        return []
    lines = ["", "## Test time with the learned proposal (toy 2, joint_nce, K = 4)", "",
             "| method | seed | grid NLL | SNIS NLL, M = 1024 | SNIS NLL, M = 8192 | |SNIS(8192) − grid| | SNIS mean RMSE vs grid mean |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["method"], r["seed"])):
        lines.append(f"| {r['method']} | {r['seed']} | {r['value']:.4f} | {r['snis_nll_m1024']:.4f} | {r['snis_nll_m8192']:.4f} | "
                     f"{abs(r['snis_nll_m8192'] - r['value']):.4f} | {r['snis_mean_rmse_vs_grid']:.4f} |")
    return lines


def _teacher(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for dataset in ("toy1", "toy2"):
        by = {m: {r["seed"]: r["value"] for r in records if r["dataset"] == dataset and r["method"] == m}
              for m in ("mdn", "mdn_teacher")}
        seeds = sorted(set(by["mdn"]) & set(by["mdn_teacher"]))
        if len(seeds) < 2:
            continue
        diffs = [by["mdn_teacher"][s] - by["mdn"][s] for s in seeds]
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        better = sum(d < 0 for d in diffs)
        lines += [f"- {dataset}: MDN with teacher − MDN by NLL, paired by seed over {len(seeds)} seeds: "
                  f"mean {mean:+.4f}, std {sd:.4f}, standard error {sd / math.sqrt(len(seeds)):.4f}; "
                  f"the teacher is better on {better} of {len(seeds)} seeds (lower is better)."]
    return ["", "## MDN with an energy-based teacher vs MDN by NLL", ""] + lines if lines else []


def _provenance(records: list[dict[str, Any]]) -> list[str]:
    """Which library code (git tree of ``ebreg/``) made how many records, per dataset."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        counts[(r["dataset"], r.get("library", "not recorded (code before the field was added)"))] += 1
    return ["", "Records by the library code that made them (git tree of `ebreg/`; one run of a joint",
            "method makes two records, its EBM and its proposal):", "",
            *(f"- {dataset}: {library}: {n} records" for (dataset, library), n in sorted(counts.items()))]


def write_report(records: list[dict[str, Any]], path: Path, command: str) -> None:
    """Write the markdown table of ``records`` to ``path``."""
    from ebreg.io import write_text

    write_text(path, "\n".join([
        "# Toy benchmarks: every method, many seeds",
        "",
        f"Made by `{command}` and the earlier invocations whose records it kept (records in `toy.json`,",
        "each with the library code that made it, listed below; figures for seed 0 in `toy_figures/`).",
        "Toy 1: KL(truth ‖ model) on the 2048 × 2048 grid (docs/protocols.md §4); toy 2: test NLL with the",
        f"density normalised on 8192 points over [−12.5, 12.5] (the true density scores {TRUE_TOY2_NLL}).",
        "MDN rows and `proposal_only` rows use the exact mixture density. All rows: reference",
        "budget (75 epochs, batch 32, M = 1024) with ebreg's default optimiser schedule (Adam,",
        "warm-up to 3e-3, cosine decay), and the reference architecture (width 10) except rows",
        "named `+wide`, our improved configuration: a 32-wide feature network, all else the same.",
        "Lower is better. A diverged run counts as +∞ in the median and the worst value.",
        *_provenance(records),
        "",
        "| dataset | method | K | runs | diverged | median | mean | best | worst | s/run | official code (median, range) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *_rows(records),
        *_snis(records),
        *_teacher(records),
        "",
    ]))
