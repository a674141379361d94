"""The UCI folder loader: a small folder of the layout, its errors, and ../shared's six."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ebreg.datasets import load_uci, uci_datasets


def _write(folder: Path, data: np.ndarray, splits: list[tuple[list[int], list[int]]]) -> Path:
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.txt", data)
    (folder / "index_features.txt").write_text("0\n1\n")
    (folder / "index_target.txt").write_text("2\n")
    (folder / "n_splits.txt").write_text(f"{len(splits)}\n")
    for k, (train, test) in enumerate(splits):
        (folder / f"index_train_{k}.txt").write_text("\n".join(map(str, train)) + "\n")
        (folder / f"index_test_{k}.txt").write_text("\n".join(map(str, test)) + "\n")
    return folder


def test_loads_a_folder_of_the_layout(tmp_path: Path) -> None:
    data = np.arange(15.0).reshape(5, 3)
    ds = load_uci(_write(tmp_path / "tiny", data, [([0, 1, 2], [3, 4]), ([4, 3, 1], [0, 2])]))
    assert ds.name == "tiny" and ds.n_splits == 2
    part = ds.split(1)
    assert np.array_equal(part.x_train, data[[4, 3, 1]][:, :2]) and np.array_equal(part.y_test, data[[0, 2], 2])
    assert uci_datasets(tmp_path) == ["tiny"]
    with pytest.raises(IndexError, match="splits 0..1"):
        ds.split(2)


def test_layout_errors_are_named(tmp_path: Path) -> None:
    data = np.arange(15.0).reshape(5, 3)
    with pytest.raises(FileNotFoundError, match="missing data.txt"):
        load_uci(tmp_path)
    with pytest.raises(ValueError, match="both its train and test"):
        load_uci(_write(tmp_path / "overlap", data, [([0, 1, 2], [2, 3, 4])]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        load_uci(_write(tmp_path / "range", data, [([0, 1, 7], [3, 4])]))


def test_the_shared_benchmark_loads_with_its_documented_shapes(uci_dir: Path) -> None:
    root = uci_dir
    shapes = {"bostonHousing": (506, 13, 20), "concrete": (1030, 8, 20), "energy": (768, 8, 20),
              "power-plant": (9568, 4, 20), "protein-tertiary-structure": (45730, 9, 5),
              "wine-quality-red": (1599, 11, 20)}
    assert uci_datasets(root) == sorted(shapes)
    for name, (n, d, splits) in shapes.items():
        if name == "protein-tertiary-structure":
            continue  # 45k rows: slow to parse, its shape is checked by the benchmark
        ds = load_uci(root / name)
        assert (ds.x.shape, ds.n_splits) == ((n, d), splits)
        train, test = ds.splits[0]
        assert len(train) == round(0.9 * n) and len(train) + len(test) == n
