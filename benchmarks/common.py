"""What the benchmarks share: paths, the constants their reports quote, and resumable records.

Every benchmark runs against the installed ``ebreg`` from the repository root, as a module:
``python -m benchmarks.toy``, ``python -m benchmarks.uci``, ... Each run appends its own
record to a JSON file in ``benchmarks/results`` and is skipped when its record exists.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: the project's shared data, beside the repository (absent on ordinary machines)
SHARED_DATA = ROOT.parent / "shared" / "data"

# ---------------------------------------------------------------------------- toy problems
#: the official code as measured in the project's notes (5 seeds each): KL on toy 1, NLL on toy 2
TOY_REFERENCE = {
    ("toy1", "nce_fixed", None): "0.049 (0.039–0.344, 0 of 5 diverged)",
    ("toy1", "joint_nce", 4): "0.070 (0.036–∞, 1 of 5 diverged)",
    ("toy2", "nce_fixed", None): "1.975 (1.605–2.106)",
    ("toy2", "joint_nce", 4): "1.705 (1.674–1.824)",
}
#: the test NLL of toy 2's true density on its grid
TRUE_TOY2_NLL = 1.239

# ----------------------------------------------------------------------------- UCI tables
#: the baselines run beside the EBM on every split
UCI_PEERS = ("mdn", "gaussian_mlp", "deep_ensemble", "ngboost", "ngboost_es", "ngboost_leaves", "catboost", "pgbm")
UCI_DEFAULT_METHODS = ("ebm", *UCI_PEERS)
UCI_METHODS = (*UCI_DEFAULT_METHODS, "ebm_single", "ebm_mlis", "ebm_refined", "ebm_conformal", "ebm_search",
               "ebm_onehot")
#: EBM variants whose records also hold their score at temperature 1 (before calibration)
UCI_CALIBRATED = ("ebm", "ebm_single", "ebm_refined")
#: datasets with integer targets, scored after adding uniform noise of one step
UCI_DEQUANTIZED = ("wine-quality-red",)


def median_worst(values: list[float], spec: str = ".1f") -> str:
    """``median (worst)`` of ``values`` for a report cell (worst: the largest), or ``–`` for none."""
    return f"{statistics.median(values):{spec}} ({max(values):{spec}})" if values else "–"


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records in ``path`` (none when it does not exist)."""
    return json.loads(path.read_text()) if path.exists() else []


def merge_records(path: Path, new: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable],
                  order: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Write ``new`` into ``path`` (atomically), replacing the records with the same ``key``;
    returns every record, sorted by ``order`` (default: ``key``)."""
    from ebreg.io import write_json

    new = list(new)
    keys = {key(r) for r in new}
    records = sorted([r for r in load_records(path) if key(r) not in keys] + new, key=order or key)
    write_json(path, records)
    return records


#: the one-hot candidates (``onehot8`` in uci_tune, ``ebm_onehot`` in uci) encode the input columns
#: with at most this many distinct training values
ONE_HOT_MAX_VALUES = 8


def one_hot_encoder(x_train, max_values: int = ONE_HOT_MAX_VALUES):  # noqa: ANN001, ANN201
    """A ColumnTransformer fitted on ``x_train`` ``(n, d)`` that one-hot encodes every column with
    at most ``max_values`` distinct training values (a value it has not seen: all zeros) and
    passes the others through."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    few = [j for j in range(x_train.shape[1]) if len(np.unique(x_train[:, j])) <= max_values]
    return ColumnTransformer([("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), few)],
                             remainder="passthrough").fit(x_train)
