"""Procedural image-regression datasets, generated on the fly from a seed (no downloads).

* :func:`cell_counts`: grey images with N Gaussian "cells" (they may overlap), target N.
  Overlaps and faint cells make the count uncertain, more so for crowded images.
* :func:`bar_orientations`: one bar (symmetric under a half turn) at angle θ, target θ
  in degrees in [0, 360): θ and θ + 180 give the same image, so p(y|x) has two modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageData", "cell_counts", "bar_orientations"]


@dataclass(frozen=True)
class ImageData:
    """Images ``x`` ``(n, 1, size, size)`` float32 in [0, 1]-ish and targets ``y`` ``(n,)``."""

    x: np.ndarray
    y: np.ndarray


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(c, c, indexing="ij")


def cell_counts(n: int, seed: int, size: int = 64, max_cells: int = 20, noise: float = 0.05) -> ImageData:
    """``n`` images with N ~ U{1..max_cells} blobs of random radius and brightness."""
    rng = np.random.RandomState(seed)
    rows, cols = _grid(size)
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    counts = rng.randint(1, max_cells + 1, size=n)
    for i, count in enumerate(counts):
        centres = rng.uniform(4, size - 4, (count, 2))
        radius = rng.uniform(1.5, 3.5, count)
        bright = rng.uniform(0.3, 1.0, count)
        img = np.zeros((size, size), dtype=np.float32)
        for (r, c), s, b in zip(centres, radius, bright):
            img += b * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s**2))
        x[i, 0] = np.clip(img, 0, 1.5) + noise * rng.randn(size, size)
    return ImageData(x, counts.astype(np.float64))


def bar_orientations(n: int, seed: int, size: int = 64, noise: float = 0.1) -> ImageData:
    """``n`` images of a bar through the centre at angle θ ~ U[0, 360) degrees; target θ."""
    rng = np.random.RandomState(seed)
    rows, cols = _grid(size)
    theta = rng.uniform(0, 360, n)
    x = np.zeros((n, 1, size, size), dtype=np.float32)
    centre = size / 2
    for i, t in enumerate(np.deg2rad(theta)):
        along = (cols - centre) * np.cos(t) - (rows - centre) * np.sin(t)
        across = (cols - centre) * np.sin(t) + (rows - centre) * np.cos(t)
        bar = np.exp(-(across**2) / (2 * 2.0**2)) * (np.abs(along) < size * 0.35)
        x[i, 0] = bar + noise * rng.randn(size, size)
    return ImageData(x, theta)
