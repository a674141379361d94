"""Tables in and out: CSV, Parquet and NPZ files, and how a model's columns map to arrays.

:class:`TableSpec` records which columns are the target(s) and the features, and the
categories of one-hot encoded columns, so that prediction encodes new tables exactly as
training did. Every problem with a table is raised as :class:`TableError` naming it.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_write

__all__ = ["TableError", "TableSpec", "read_table", "write_table", "table_format", "finite_rows"]

_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


class TableError(ValueError):
    """A data file or its columns cannot be used; the message says why."""


def table_format(path: str | Path, allowed: tuple[str, ...] = ("csv", "parquet", "npz")) -> str:
    """The format named by ``path``'s extension, or a :class:`TableError`."""
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt not in allowed:
        exts = sorted(e for e, f in _FORMATS.items() if f in allowed)
        raise TableError(f"{path}: unknown format {Path(path).suffix or '(no extension)'!r}; use one of {', '.join(exts)}")
    return fmt


def _parquet_engine() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise TableError("Parquet files need pyarrow: pip install pyarrow (or use CSV)") from err


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (with a header row), Parquet or NPZ file (each array a column; a 2-D
    array ``a`` becomes columns ``a_0, a_1, ...``)."""
    path = Path(path)
    fmt = table_format(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    if not path.is_file():  # a folder, a FIFO or a device: reading it could hang
        raise TableError(f"{path}: not a regular file")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path)
            with path.open(newline="", encoding="utf-8", errors="replace") as f:
                header = next(csv.reader(f), [])
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:  # pandas would rename the second one silently
                raise TableError(f"{path}: column(s) named twice in the header: {', '.join(twice)}")
        elif fmt == "parquet":
            _parquet_engine()
            frame = pd.read_parquet(path)
        else:
            if not zipfile.is_zipfile(path):
                raise TableError(f"{path}: cannot be read as NPZ (not a zip archive of .npy arrays)")
            with np.load(path, allow_pickle=False) as data:
                columns: dict[str, np.ndarray] = {}
                for key in data.files:
                    arr = data[key]
                    if arr.ndim == 1:
                        columns[key] = arr
                    elif arr.ndim == 2:
                        columns.update({f"{key}_{j}": arr[:, j] for j in range(arr.shape[1])})
                    else:
                        raise TableError(f"{path}: array {key!r} has {arr.ndim} dimensions; columns need 1 or 2")
                lengths = {len(v) for v in columns.values()}
                if len(lengths) > 1:
                    raise TableError(f"{path}: arrays have different lengths {sorted(lengths)}")
                frame = pd.DataFrame(columns)
    except TableError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise TableError(f"{path}: cannot be read as {fmt.upper()} ({str(err).splitlines()[0]})") from err
    if frame.empty:
        raise TableError(f"{path}: the table has no rows")
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by extension), atomically."""
    fmt = table_format(path, ("csv", "parquet"))
    if fmt == "parquet":
        _parquet_engine()
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def finite_rows(values: np.ndarray, columns: list[str], what: str) -> tuple[np.ndarray, str | None]:
    """Rows of ``values`` ``(n, c)`` that are all finite, and a description of the others
    (None when every row is finite)."""
    bad = ~np.isfinite(values)
    rows = bad.any(1)
    if not rows.any():
        return ~rows, None
    cols = [c for c, b in zip(columns, bad.any(0)) if b]
    first = ", ".join(str(i) for i in np.flatnonzero(rows)[:5])
    more = "" if rows.sum() <= 5 else ", ..."
    return ~rows, (f"{what} has NaN or infinite values in {rows.sum()} row(s) (rows {first}{more}; "
                   f"columns {', '.join(map(str, cols))})")


@dataclass
class TableSpec:
    """Target and feature columns of a model, and the one-hot categories of encoded columns."""

    targets: list[str]
    features: list[str]
    one_hot: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def infer(cls, frame: pd.DataFrame, targets: list[str], features: list[str] | None,
              one_hot: bool) -> TableSpec:
        """The spec for training on ``frame``: ``features`` default to every other column;
        non-numeric feature columns are refused unless ``one_hot``."""
        missing = [c for c in targets + (features or []) if c not in frame.columns]
        if missing:
            raise TableError(f"column(s) {', '.join(map(repr, missing))} not in the data; it has "
                             f"{', '.join(map(str, frame.columns))}")
        features = [c for c in frame.columns if c not in targets] if features is None else features
        if not features:
            raise TableError("no feature columns: the data has only the target column(s)")
        overlap = set(features) & set(targets)
        if overlap:
            raise TableError(f"column(s) {sorted(overlap)} are both target and feature")
        bad_targets = [c for c in targets if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad_targets:
            raise TableError(f"target column(s) {', '.join(bad_targets)} are not numeric")
        text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if text and not one_hot:
            raise TableError(f"feature column(s) {', '.join(text)} are not numeric; pass --one-hot to "
                             f"encode them as categories, or leave them out with --features")
        categories = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in text}
        return cls(list(targets), list(features), categories)

    @property
    def feature_names(self) -> list[str]:
        """Names of the model's input columns after one-hot encoding."""
        out = []
        for c in self.features:
            out += [f"{c}={v}" for v in self.one_hot[c]] if c in self.one_hot else [c]
        return out

    def feature_matrix(self, frame: pd.DataFrame, unknown_categories: str = "error") -> np.ndarray:
        """Features ``(n, d)`` as float64, columns found by name (any order, extras ignored).

        A category unseen in training is refused (``unknown_categories="error"``) or encoded as
        none of the known ones, all zeros (``"ignore"``); a missing one is NaN in every column.
        """
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise TableError(f"the data lacks feature column(s) the model was trained on: {', '.join(missing)}")
        parts = []
        for c in self.features:
            if c in self.one_hot:
                values, missing = frame[c].astype(str), frame[c].isna().to_numpy()
                unknown = sorted(set(values[~missing]) - set(self.one_hot[c]))
                if unknown and unknown_categories == "error":
                    raise TableError(f"column {c} has categories unseen in training: {', '.join(unknown[:5])}; "
                                     f"--unknown-categories ignore encodes them as none of the known")
                encoded = np.stack([(values == v).to_numpy(float) for v in self.one_hot[c]], 1)
                encoded[missing] = np.nan  # a missing category is missing, as a missing number is
                parts.append(encoded)
            else:
                if not pd.api.types.is_numeric_dtype(frame[c]):
                    raise TableError(f"feature column {c} is not numeric")
                parts.append(frame[c].to_numpy(float)[:, None])
        return np.concatenate(parts, 1)

    def target_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Targets ``(n, D)`` as float64."""
        missing = [c for c in self.targets if c not in frame.columns]
        if missing:
            raise TableError(f"target column(s) {', '.join(missing)} not in the data")
        return frame[self.targets].to_numpy(float)

    def to_dict(self) -> dict[str, Any]:
        return {"targets": self.targets, "features": self.features, "one_hot": self.one_hot}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableSpec:
        return cls(list(data["targets"]), list(data["features"]), dict(data.get("one_hot", {})))
