"""Loader for the UCI regression benchmark layout with its fixed train/test splits.

A dataset is a folder holding ``data.txt`` (whitespace-separated numbers, no header),
``index_features.txt`` and ``index_target.txt`` (0-based columns), ``n_splits.txt`` and
``index_train_<k>.txt`` / ``index_test_<k>.txt`` (0-based rows) for k = 0 .. n_splits - 1.
Any folder of that layout loads, so new datasets drop in beside the standard six.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["UCIDataset", "UCISplit", "load_uci", "uci_datasets"]

_REQUIRED = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt")


@dataclass(frozen=True)
class UCISplit:
    """One fixed split: ``x_train`` ``(n_train, d)``, ``y_train`` ``(n_train,)``, and the test part."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class UCIDataset:
    """Inputs ``x`` ``(n, d)``, target ``y`` ``(n,)`` and the fixed ``(train, test)`` row indices."""

    name: str
    x: np.ndarray
    y: np.ndarray
    splits: tuple[tuple[np.ndarray, np.ndarray], ...]

    @property
    def n_splits(self) -> int:
        return len(self.splits)

    def split(self, k: int) -> UCISplit:
        """The k-th fixed split."""
        if not 0 <= k < self.n_splits:
            raise IndexError(f"{self.name} has splits 0..{self.n_splits - 1}, asked for {k}")
        train, test = self.splits[k]
        return UCISplit(self.x[train], self.y[train], self.x[test], self.y[test])


def _indices(path: Path, n: int) -> np.ndarray:
    idx = np.atleast_1d(np.loadtxt(path, dtype=np.int64))
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"{path}: indices must lie in [0, {n}), got [{idx.min(initial=0)}, {idx.max(initial=0)}]")
    return idx


def load_uci(folder: str | Path) -> UCIDataset:
    """Load one dataset folder (see the module docstring for the layout)."""
    folder = Path(folder)
    missing = [f for f in _REQUIRED if not (folder / f).exists()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a UCI dataset folder: missing {', '.join(missing)}")
    data = np.loadtxt(folder / "data.txt", ndmin=2)
    if not np.isfinite(data).all():
        raise ValueError(f"{folder / 'data.txt'} contains NaN or infinite values")
    features = _indices(folder / "index_features.txt", data.shape[1])
    target = int(_indices(folder / "index_target.txt", data.shape[1])[0])
    if target in features:
        raise ValueError(f"{folder}: the target column {target} is also listed as a feature")
    n_splits = int(np.loadtxt(folder / "n_splits.txt"))
    splits = []
    for k in range(n_splits):
        train = _indices(folder / f"index_train_{k}.txt", len(data))
        test = _indices(folder / f"index_test_{k}.txt", len(data))
        if np.intersect1d(train, test).size:
            raise ValueError(f"{folder}: split {k} has rows in both its train and test parts")
        splits.append((train, test))
    return UCIDataset(folder.name, data[:, features], data[:, target], tuple(splits))


def uci_datasets(root: str | Path) -> list[str]:
    """Names of the dataset folders directly under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "data.txt").exists())
