"""Matplotlib figures (matplotlib is imported lazily, inside each function)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["density_panels"]


def density_panels(
    path: str | Path,
    panels: list[tuple[str, np.ndarray]],
    x_grid: np.ndarray,
    y_grid: np.ndarray,
    curve: tuple[str, np.ndarray] | None = None,
) -> Path:
    """Side-by-side heat maps of conditional densities ``p(y|x)``, written atomically as PNG.

    ``panels``: ``(title, density)`` with density ``(len(y_grid), len(x_grid))``; ``curve``:
    ``(label, values (len(x_grid),))`` drawn over every panel (e.g. the SNIS mean);
    ``points``: training data ``(x, y)`` shown faintly on the first panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), sharey=True,
                             constrained_layout=True)
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
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    fig.colorbar(im, ax=axes.tolist(), shrink=0.9, label="p(y | x)")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return Path(path)
