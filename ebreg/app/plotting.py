"""Matplotlib figures (matplotlib is imported lazily, inside each function)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write

__all__ = ["density_panels", "pit_histogram", "reliability_diagram", "predicted_vs_true", "row_density"]


@contextmanager
def _figure(path: str | Path, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` from ``plt.subplots(**subplots)``, saved atomically as PNG at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def pit_histogram(path: str | Path, pit: np.ndarray, bins: int = 20) -> Path:
    """Histogram of PIT values ``(n,)``: flat for a calibrated model."""
    with _figure(path, figsize=(5, 3.5), constrained_layout=True) as (_, ax):
        ax.hist(pit, bins=bins, range=(0, 1), density=True, color="tab:blue", alpha=0.8)
        ax.axhline(1.0, color="k", ls="--", lw=1, label="calibrated")
        ax.set_xlabel("PIT = F(y | x)")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize=8)
    return Path(path)


def reliability_diagram(path: str | Path, levels: np.ndarray, coverage: np.ndarray) -> Path:
    """Observed coverage of central intervals against their nominal level."""
    with _figure(path, figsize=(4, 4), constrained_layout=True) as (_, ax):
        ax.plot([0, 1], [0, 1], color="k", ls="--", lw=1, label="calibrated")
        ax.plot(levels, coverage, marker="o", color="tab:red", label="model")
        ax.set_xlabel("nominal level of the central interval")
        ax.set_ylabel("observed coverage")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    return Path(path)


def predicted_vs_true(path: str | Path, y: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray,
                      level: float, target: str = "y") -> Path:
    """Predictive mean with its central interval against the observed value, per row."""
    with _figure(path, figsize=(4.5, 4.5), constrained_layout=True) as (_, ax):
        ax.errorbar(y, mean, yerr=[mean - low, high - mean], fmt="o", ms=2.5, lw=0.6, alpha=0.6,
                    color="tab:blue", label=f"mean, {level:.0%} interval")
        lo, hi = float(min(y.min(), low.min())), float(max(y.max(), high.max()))
        ax.plot([lo, hi], [lo, hi], color="k", ls="--", lw=1)
        ax.set_xlabel(f"observed {target}")
        ax.set_ylabel(f"predicted {target}")
        ax.legend(loc="upper left", fontsize=8)
    return Path(path)


def row_density(path: str | Path, grid: np.ndarray, curves: list[tuple[str, np.ndarray]],
                observed: float | None = None, title: str = "") -> Path:
    """Predictive densities of one row over ``grid``, with the observed value if known."""
    with _figure(path, figsize=(6, 3.5), constrained_layout=True) as (_, ax):
        for label, density in curves:
            ax.plot(grid, density, lw=1.5, label=label)
        if observed is not None:
            ax.axvline(observed, color="k", ls="--", lw=1, label="observed")
        ax.set_xlabel("y")
        ax.set_ylabel("p(y | x)")
        ax.set_title(title)
        ax.legend(loc="upper right", fontsize=8)
    return Path(path)


def density_panels(
    path: str | Path,
    panels: list[tuple[str, np.ndarray]],
    x_grid: np.ndarray,
    y_grid: np.ndarray,
    curve: tuple[str, np.ndarray] | None = None,
    x_label: str = "x",
    y_label: str = "y",
) -> Path:
    """Side-by-side heat maps of conditional densities ``p(y|x)``, written atomically as PNG.

    ``panels``: ``(title, density)`` with density ``(len(y_grid), len(x_grid))``; ``curve``:
    ``(label, values (len(x_grid),))`` drawn over every panel (e.g. the SNIS mean);
    ``points``: training data ``(x, y)`` shown faintly on the first panel.
    """
    with _figure(path, nrows=1, ncols=len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True,
                 constrained_layout=True) as (fig, axes):
        axes = np.atleast_1d(axes)
        vmax = max(float(np.quantile(d, 0.995)) for _, d in panels)
        extent = (x_grid[0], x_grid[-1], y_grid[0], y_grid[-1])
        for i, (ax, (title, density)) in enumerate(zip(axes, panels)):
            im = ax.imshow(density, origin="lower", aspect="auto", extent=extent, cmap="viridis",
                           vmin=0.0, vmax=vmax, interpolation="nearest")
            if curve is not None and i > 0:
                ax.plot(x_grid, curve[1], color="tab:red", lw=1.2, label=curve[0])
                ax.legend(loc="upper left", fontsize=8, framealpha=0.7)
            ax.set_title(title)
            ax.set_xlabel(x_label)
        axes[0].set_ylabel(y_label)
        fig.colorbar(im, ax=axes.tolist(), shrink=0.9, label=f"p({y_label} | {x_label})")
    return Path(path)
