"""The paper's two 1-D toy problems, with their true conditional densities (docs/protocols.md §5).

* Toy 1: bimodal for x < 0, skewed (shifted log-normal) for x >= 0.
* Toy 2: four zones in x (asymmetric, symmetric, uniform, multimodal), built by a fixed
  recipe on NumPy's legacy global RNG, split into train / validation / test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

__all__ = ["ToyData", "Toy1", "Toy2", "load_toy1_reference", "load_toy2_reference"]


@dataclass(frozen=True)
class ToyData:
    """Inputs ``x`` ``(n,)`` and targets ``y`` ``(n,)`` of a 1-D problem."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise ValueError(f"x and y must be 1-D of equal length, got {self.x.shape}, {self.y.shape}")


def _load_npz(path: Path) -> ToyData:
    if not path.exists():
        raise FileNotFoundError(f"reference toy data not found: {path}")
    with np.load(path) as data:
        return ToyData(np.asarray(data["x"]), np.asarray(data["y"]))


class Toy1:
    """Toy 1: x ~ U(-3, 3); for x < 0, y ~ 0.8 N(sin x, 0.075²) + 0.2 N(-sin x, 0.075²);
    for x >= 0, y + 1 ~ LogNormal(0, 0.25)."""

    x_range = (-3.0, 3.0)
    y_range = (-3.0, 3.0)
    std = 0.075
    weight = 0.8
    lognormal_s = 0.25

    @staticmethod
    def sample(n: int = 2000, seed: int | None = 0) -> ToyData:
        """Draw ``n`` fresh pairs with ``numpy.random.default_rng(seed)``."""
        rng = np.random.default_rng(seed)
        x = rng.uniform(-3.0, 3.0, n)
        sign = np.where(rng.uniform(size=n) < Toy1.weight, 1.0, -1.0)
        bimodal = sign * np.sin(x) + Toy1.std * rng.standard_normal(n)
        skewed = np.exp(Toy1.lognormal_s * rng.standard_normal(n)) - 1.0
        return ToyData(x, np.where(x < 0, bimodal, skewed))

    @staticmethod
    def true_log_prob(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log p(y|x)`` for broadcastable ``x`` and ``y`` (``-inf`` off the support)."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        log_w = np.log([Toy1.weight, 1 - Toy1.weight])
        comp = np.stack([
            log_w[0] + stats.norm.logpdf(y, np.sin(x), Toy1.std),
            log_w[1] + stats.norm.logpdf(y, -np.sin(x), Toy1.std),
        ])
        bimodal = np.logaddexp(comp[0], comp[1])
        with np.errstate(divide="ignore"):
            skewed = stats.lognorm.logpdf(y + 1.0, s=Toy1.lognormal_s)
        return np.where(x < 0, bimodal, skewed)


def load_toy1_reference(path: str | Path) -> ToyData:
    """The reference's exact 2000 toy-1 training points (``toy1_train.npz``: x, y)."""
    return _load_npz(Path(path))


class Toy2:
    """Toy 2 (3800 points, x in [0, 1]): four zones of 800, 1000, 500 and 1500 indices."""

    size = 1000
    n_points = 3800
    y_range = (-12.5, 12.5)
    #: first index of zones 2, 3 and 4 in the unshuffled data (x = index / 3799)
    zone_starts = (800, 1800, 2300)

    @staticmethod
    def recipe() -> tuple[np.ndarray, np.ndarray]:
        """The unshuffled ``(x, y)`` and the permutation, from the fixed legacy-RNG recipe.

        Returns ``x`` ``(3800,)`` and ``y`` ``(3800,)`` already permuted, exactly as the
        reference data were made. This seeds (and so changes) NumPy's global RNG state, as
        the recipe requires, and restores it afterwards.
        """
        state = np.random.get_state()
        try:
            np.random.seed(41)
            size = Toy2.size
            y1 = 5 * np.random.beta(0.5, 1, size=int(0.8 * size)) + 0.5
            np.random.shuffle(y1)
            c = 3 * np.cos(np.linspace(0, 5, size)) - 2
            y2 = c + np.random.normal(0, np.abs(c) / 4, size=size)
            a = np.linspace(-2, -4.5, size // 2)
            b = np.linspace(-0.5, 9, size // 2)
            y3 = np.array([np.random.uniform(lo, hi) for lo, hi in zip(a, b)])
            y4 = np.concatenate([
                8 + 0.5 * np.random.uniform(size=size // 2),
                1 + 3 * np.random.uniform(size=size // 2),
                -4.5 + 1.5 * np.random.uniform(size=size // 2),
            ])
            np.random.shuffle(y4)
            y = np.concatenate([y1, y2, y3, y4])
            x = np.arange(y.size) / (y.size - 1)
            perm = np.arange(y.size)
            np.random.shuffle(perm)
        finally:
            np.random.set_state(state)
        return x[perm], y[perm]

    @staticmethod
    def splits() -> dict[str, ToyData]:
        """``train`` (1710), ``val`` (190) and ``test`` (1900) from :meth:`recipe`."""
        x, y = Toy2.recipe()
        n_test = y.size // 2
        n_val = int(0.1 * (y.size - n_test))
        return {
            "test": ToyData(x[:n_test], y[:n_test]),
            "val": ToyData(x[n_test:n_test + n_val], y[n_test:n_test + n_val]),
            "train": ToyData(x[n_test + n_val:], y[n_test + n_val:]),
        }

    @staticmethod
    def true_log_prob(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log p(y|x)`` for broadcastable ``x`` in [0, 1] and ``y``; x maps to the nearest index."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        idx = np.clip(np.rint(x * (Toy2.n_points - 1)), 0, Toy2.n_points - 1)
        s2, s3, s4 = Toy2.zone_starts
        size = Toy2.size
        with np.errstate(divide="ignore"):
            zone1 = stats.beta.logpdf((y - 0.5) / 5, 0.5, 1) - math.log(5)
            j2 = np.clip(idx - s2, 0, size - 1)
            c = 3 * np.cos(5 * j2 / (size - 1)) - 2
            zone2 = stats.norm.logpdf(y, c, np.abs(c) / 4)
            j3 = np.clip(idx - s3, 0, size // 2 - 1) / (size // 2 - 1)
            lo, hi = -2 - 2.5 * j3, -0.5 + 9.5 * j3
            zone3 = stats.uniform.logpdf(y, lo, hi - lo)
            zone4 = np.log(
                stats.uniform.pdf(y, 8, 0.5) / 3
                + stats.uniform.pdf(y, 1, 3) / 3
                + stats.uniform.pdf(y, -4.5, 1.5) / 3
            )
        return np.select([idx < s2, idx < s3, idx < s4], [zone1, zone2, zone3], zone4)


def load_toy2_reference(folder: str | Path) -> dict[str, ToyData]:
    """The reference's toy-2 arrays ``toy2_{train,val,test}.npz`` from ``folder``."""
    folder = Path(folder)
    return {part: _load_npz(folder / f"toy2_{part}.npz") for part in ("train", "val", "test")}
