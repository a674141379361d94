"""UCI regression benchmark on the fixed splits: ebreg's EBM and MDN against the usual peers.

    python -m benchmarks.uci --data ../shared/data/uci [--datasets concrete,energy] [--splits 0,1,2]
                             [--methods ebm,mdn,gaussian_mlp,deep_ensemble,ngboost,ngboost_es,ngboost_leaves,catboost,
                                        pgbm,ebm_single,ebm_mlis,ebm_refined,ebm_conformal,ebm_search,
                                        ebm_onehot]
                             [--quick] [--jobs 2] [--out benchmarks/results]

Methods: ``ebm`` (EBMRegressor's defaults), ``mdn`` (MDNRegressor's defaults),
``gaussian_mlp`` (the MDN with one component: a heteroscedastic Gaussian MLP),
``deep_ensemble`` (5 of those with different seeds, predicting their equal-weight mixture),
``ngboost`` (the ``ngboost`` package's NGBRegressor with a Normal, its defaults),
``ngboost_es`` (the same with up to 2,000 boosting rounds, stopped early on a validation part of
20 % of the training rows after 50 rounds without improvement, predicting with its best round),
``ngboost_leaves`` (RoNGBa's recipe for NGBoost: best-first trees limited in leaves instead of
depth, 8, 16 or 32 leaves with learning rate 0.01 or 0.05, each stopped early on the same
validation part, the pair with the lowest validation NLL kept), ``catboost`` (CatBoostRegressor with ``loss_function="RMSEWithUncertainty"``: a Normal whose
mean and variance are boosted, up to 5,000 rounds stopped early on the same validation part) and
``pgbm`` (PGBM's ``pgbm.torch.PGBMRegressor``, up to 2,000 rounds stopped early on the same
validation part, its Normal from the learned mean and variance, with the tree correlation
that sets the variance chosen by the validation part's NLL over PGBM's own grid: PGBM's own package, whose
scikit-learn variant is built against NumPy 1 and does not load beside NumPy 2); and, only
when asked for, ``ebm_single`` (one EBM, ``ensemble_size=1``: the ``ebm`` column before
ensembles became the default for fewer than 2,000 rows; on larger data it is ``ebm``) and
``ebm_mlis`` (one EBM trained by ML-IS, ``method="joint_mlis"``, which ``EBMRegressor`` ran by
default before 2026-11-29) and ``ebm_refined`` (one EBM refining an MDN,
``EBMRegressor(ensemble_size=1, refine_mdn=True)``: its proposal is the MDN that ``mdn`` trains
with the same seed) and ``ebm_conformal`` (``EBMRegressor(interval_calibration="conformal")``:
10 % of the training rows held out of every member, its ``coverage90`` that of the conformal
``predict_interval``; its other metrics are the predictive's, on 10 % fewer training rows) and
``ebm_search`` (``EBMRegressor(search="auto")``: the default settings or networks twice as wide,
chosen by the first member's validation NLL; the record's ``chosen`` names the winner) and
``ebm_onehot`` (``EBMRegressor()`` on inputs whose columns with at most 8 distinct training
values are one-hot encoded, as a scikit-learn ``ColumnTransformer`` would in a pipeline).
Every method sees the same training rows (ours carve their validation part from them)
and is scored on the split's test rows in original units: NLL, RMSE of the mean, CRPS and
the coverage of the central 90 % interval. ``ebm``, ``ebm_single`` and ``ebm_refined`` records also hold the
fitted temperatures (one per model; 1 for the members of an ensemble, which the default
does not calibrate) and the same metrics at temperature 1 (``nll_t1``, ...: the networks
before calibration). Wine's ratings are integers: its records also
hold ``nll_dequantized``, from a second fit on targets with uniform noise of width 1 added
to the training and the test targets.

Each (dataset, split, method) is one task in a worker process (one thread each); it appends
its record to ``OUT/uci.json`` as soon as it is done and is skipped when its record exists.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    SHARED_DATA,
    UCI_CALIBRATED,
    UCI_DEFAULT_METHODS,
    UCI_DEQUANTIZED,
    UCI_METHODS,
    UCI_PEERS,
    load_records,
    merge_records,
    one_hot_encoder,
)
from benchmarks.uci_report import write_report

DEFAULT_DATA = SHARED_DATA / "uci"
PEERS, DEFAULT_METHODS, METHODS, CALIBRATED = UCI_PEERS, UCI_DEFAULT_METHODS, UCI_METHODS, UCI_CALIBRATED
QUICK_DATASETS = ("bostonHousing", "concrete", "energy")
ENSEMBLE_SIZE = 5
#: the peers that stop early hold out this part of the training rows
VALIDATION_FRACTION = 0.2
#: ``ngboost_leaves``: (most leaves per tree, learning rate) candidates, chosen by validation NLL
NGBOOST_LEAVES_GRID = [(leaves, rate) for leaves in (8, 16, 32) for rate in (0.01, 0.05)]
DEQUANTIZED = UCI_DEQUANTIZED


def _mixture_predictive(loc, scale, weights=None):  # noqa: ANN001, ANN202
    """A MixturePredictive from per-row component arrays ``(n, K)``."""
    import numpy as np
    import torch

    from ebreg.predictive import MixturePredictive
    from ebreg.proposals import GaussianMixture

    loc, scale = (torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (loc, scale))
    logits = torch.zeros_like(loc) if weights is None else torch.as_tensor(weights).log()
    return MixturePredictive(GaussianMixture(logits, loc.unsqueeze(-1), scale.unsqueeze(-1)), squeeze=True)


def fit_predict(method: str, x_train, y_train, x_test, seed: int):  # noqa: ANN001, ANN201
    """Train ``method`` and return its predictive distribution on ``x_test``."""
    import numpy as np

    from ebreg.estimators import EBMRegressor, MDNRegressor

    if method == "ebm":
        return EBMRegressor(random_state=seed).fit(x_train, y_train).predict_dist(x_test)
    if method == "ebm_single":
        return EBMRegressor(ensemble_size=1, random_state=seed).fit(x_train, y_train).predict_dist(x_test)
    if method == "ebm_refined":
        return EBMRegressor(ensemble_size=1, refine_mdn=True, random_state=seed).fit(x_train, y_train) \
            .predict_dist(x_test)
    if method == "ebm_mlis":
        return EBMRegressor(method="joint_mlis", ensemble_size=1, random_state=seed).fit(x_train, y_train) \
            .predict_dist(x_test)
    if method == "ebm_conformal":
        est = EBMRegressor(interval_calibration="conformal", random_state=seed).fit(x_train, y_train)
        dist = est.predict_dist(x_test)
        dist.conformal_interval = tuple(est.predict_interval(x_test, 0.9).T)  # scored as its coverage90
        return dist
    if method == "ebm_search":
        est = EBMRegressor(search="auto", random_state=seed).fit(x_train, y_train)
        dist = est.predict_dist(x_test)
        dist.chosen = est.best_params_  # kept in the record
        return dist
    if method == "ebm_onehot":
        encoder = one_hot_encoder(x_train)
        return EBMRegressor(random_state=seed).fit(encoder.transform(x_train), y_train) \
            .predict_dist(encoder.transform(x_test))
    if method == "mdn":
        return MDNRegressor(random_state=seed).fit(x_train, y_train).predict_dist(x_test)
    if method == "gaussian_mlp":
        return MDNRegressor(components=1, random_state=seed).fit(x_train, y_train).predict_dist(x_test)
    if method == "deep_ensemble":
        members = [MDNRegressor(components=1, random_state=seed * ENSEMBLE_SIZE + i).fit(x_train, y_train)
                   .predict_dist(x_test) for i in range(ENSEMBLE_SIZE)]
        return _mixture_predictive(np.stack([m.mean() for m in members], 1), np.stack([m.std() for m in members], 1))
    if method == "ngboost":
        from ngboost import NGBRegressor

        ngb = NGBRegressor(random_state=seed, verbose=False).fit(x_train, y_train)
        params = ngb.pred_dist(x_test).params
        return _mixture_predictive(params["loc"][:, None], params["scale"][:, None])
    if method in ("ngboost_es", "ngboost_leaves", "catboost", "pgbm"):
        from sklearn.model_selection import train_test_split

        x_fit, x_val, y_fit, y_val = train_test_split(x_train, y_train, test_size=VALIDATION_FRACTION, random_state=seed)
        if method == "ngboost_es":
            from ngboost import NGBRegressor

            ngb = NGBRegressor(n_estimators=2000, random_state=seed, verbose=False)
            ngb.fit(x_fit, y_fit, X_val=x_val, Y_val=y_val, early_stopping_rounds=50)
            params = ngb.pred_dist(x_test, max_iter=ngb.best_val_loss_itr + 1).params
            return _mixture_predictive(params["loc"][:, None], params["scale"][:, None])
        if method == "ngboost_leaves":  # RoNGBa's recipe: best-first trees capped in leaves, not depth
            from ngboost import NGBRegressor
            from sklearn.tree import DecisionTreeRegressor

            fits = []
            for leaves, rate in NGBOOST_LEAVES_GRID:
                tree = DecisionTreeRegressor(criterion="friedman_mse", max_leaf_nodes=leaves, random_state=seed)
                ngb = NGBRegressor(Base=tree, n_estimators=3000, learning_rate=rate, random_state=seed, verbose=False)
                ngb.fit(x_fit, y_fit, X_val=x_val, Y_val=y_val, early_stopping_rounds=50)
                fits.append((-ngb.pred_dist(x_val, max_iter=ngb.best_val_loss_itr + 1).logpdf(y_val).mean(), ngb))
            ngb = min(fits, key=lambda fit: fit[0])[1]
            params = ngb.pred_dist(x_test, max_iter=ngb.best_val_loss_itr + 1).params
            return _mixture_predictive(params["loc"][:, None], params["scale"][:, None])
        if method == "catboost":
            from catboost import CatBoostRegressor

            cat = CatBoostRegressor(loss_function="RMSEWithUncertainty", iterations=5000, od_type="Iter", od_wait=100,
                                    use_best_model=True, random_seed=seed, thread_count=1, verbose=False,
                                    allow_writing_files=False)
            cat.fit(x_fit, y_fit, eval_set=(x_val, y_val))
            mean_var = cat.predict(x_test, prediction_type="RMSEWithUncertainty")  # (n, 2): mean, variance
            return _mixture_predictive(mean_var[:, :1], np.sqrt(mean_var[:, 1:]))
        import torch
        from pgbm.torch import PGBMRegressor

        torch.manual_seed(seed)
        pgbm = PGBMRegressor(n_estimators=2000, random_state=seed, verbose=0)
        pgbm.fit(x_fit, y_fit, eval_set=(x_val, y_val), early_stopping_rounds=50)

        def normal(x):  # noqa: ANN001, ANN202
            _, mean, variance = pgbm.predict_dist(x, n_forecasts=1, output_sample_statistics=True)
            return _mixture_predictive(np.asarray(mean)[:, None], np.sqrt(np.maximum(np.asarray(variance), 1e-24))[:, None])

        # PGBM's variance depends on an assumed correlation between trees, which its authors choose
        # after training on a validation part; here by the Normal's validation NLL over their grid
        nll = {}
        for rho in np.arange(-0.2, 0.2, 0.02):
            pgbm.learner_.tree_correlation = torch.tensor(rho, dtype=torch.float32)
            nll[rho] = -normal(x_val).logpdf(y_val).mean()
        pgbm.learner_.tree_correlation = torch.tensor(min(nll, key=nll.get), dtype=torch.float32)
        return normal(x_test)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def at_temperature_one(dist):  # noqa: ANN001, ANN201
    """The SNIS predictive of ``dist``'s models with their temperatures set back to 1 (changes them)."""
    from ebreg.inference import members
    from ebreg.predictive import SNISPredictive

    for model in members(dist.model):
        model.temperature.fill_(1.0)
    return SNISPredictive(dist.model, dist.x, dist.num_samples, dist.seed, squeeze=True)


def score(dist, y) -> dict[str, float]:  # noqa: ANN001
    """Test metrics of a predictive distribution at targets ``y`` ``(n,)``."""
    import numpy as np

    low, high = getattr(dist, "conformal_interval", None) or dist.interval(0.9)
    return {
        "nll": float(-dist.logpdf(y).mean()),
        "rmse": float(np.sqrt(np.mean((dist.mean() - y) ** 2))),
        "crps": float(dist.crps(y).mean()),
        "coverage90": float(np.mean((low <= y) & (y <= high))),
    }


def run_split(data_dir: str, dataset: str, split: int, methods: list[str]) -> list[dict[str, Any]]:
    """All ``methods`` on one split of one dataset; one record each."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from ebreg.datasets import load_uci
    from ebreg.inference import members

    part = load_uci(Path(data_dir) / dataset).split(split)
    records = []
    for method in methods:
        start = time.perf_counter()
        rec: dict[str, Any] = {"dataset": dataset, "split": split, "method": method}
        try:
            dist = fit_predict(method, part.x_train, part.y_train, part.x_test, split)
            rec.update(score(dist, part.y_test))
            if hasattr(dist, "chosen"):
                rec["chosen"] = dist.chosen
            if method in CALIBRATED:  # the same networks uncalibrated, for a paired comparison
                rec["temperature"] = [float(m.temperature) for m in members(dist.model)]
                rec.update({f"{k}_t1": v for k, v in score(at_temperature_one(dist), part.y_test).items()})
        except Exception as err:  # noqa: BLE001 - a failed run is recorded, never dropped
            rec.update({k: math.nan for k in ("nll", "rmse", "crps", "coverage90")}, error=repr(err))
        if dataset in DEQUANTIZED:
            rng = np.random.RandomState(1000 + split)
            y_tr = part.y_train + rng.uniform(-0.5, 0.5, part.y_train.shape)
            y_te = part.y_test + rng.uniform(-0.5, 0.5, part.y_test.shape)
            try:
                dist = fit_predict(method, part.x_train, y_tr, part.x_test, split)
                rec["nll_dequantized"] = float(-dist.logpdf(y_te).mean())
            except Exception as err:  # noqa: BLE001
                rec["nll_dequantized"], rec["error_dequantized"] = math.nan, repr(err)
        rec["seconds"] = time.perf_counter() - start
        records.append(rec)
    return records


def run_key(rec: dict[str, Any]) -> tuple:
    return rec["dataset"], rec["split"], rec["method"]


def main(argv: list[str] | None = None) -> int:
    from ebreg.datasets import load_uci, uci_datasets

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of UCI dataset folders")
    p.add_argument("--datasets", default=None, help="comma-separated folder names (default: all)")
    p.add_argument("--splits", default=None, help="comma-separated split numbers (default: all)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"any of {', '.join(METHODS)}")
    p.add_argument("--quick", action="store_true", help=f"splits 0-2 of {', '.join(QUICK_DATASETS)}")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    names = args.datasets.split(",") if args.datasets else (list(QUICK_DATASETS) if args.quick
                                                             else uci_datasets(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "uci.json"
    done = {run_key(r) for r in load_records(path)}
    tasks = []
    loaded = {name: load_uci(Path(args.data) / name) for name in names}
    for name in sorted(names, key=lambda n: len(loaded[n].y)):  # small datasets first
        n_splits = loaded[name].n_splits
        splits = [int(s) for s in args.splits.split(",")] if args.splits else range(3 if args.quick else n_splits)
        for k in splits:
            tasks += [(name, k, [m]) for m in methods if (name, k, m) not in done]
    print(f"{len(tasks)} runs ({len(done)} already recorded) -> {path}", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_split, args.data, *t) for t in tasks]
        for i, fut in enumerate(as_completed(futures), 1):
            new = fut.result()
            merge_records(path, new, run_key)
            summary = ", ".join(f"{r['method']} nll={r['nll']:.3f} ({r['seconds']:.0f} s)" for r in new)
            print(f"[{i}/{len(tasks)}] {new[0]['dataset']} split {new[0]['split']}: {summary}", flush=True)
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    write_report(load_records(path), out / "uci.md",
                 " ".join(["python -m benchmarks.uci", *(argv if argv is not None else sys.argv[1:])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
