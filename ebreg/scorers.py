"""Scorers for scikit-learn's model selection: ``cross_validate(est, X, y, scoring=neg_nll)``,
``GridSearchCV(est, grid, scoring={"nll": neg_nll, "crps": neg_crps}, refit="nll")``.

Each is a callable ``scorer(estimator, X, y) -> float`` where greater is better, as
scikit-learn's ``scoring=`` expects, for any estimator with ``predict_dist`` (and, for
:func:`neg_nll`, ``log_likelihood``); inside a ``Pipeline`` use :func:`pipeline_dist`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["neg_nll", "neg_crps", "pipeline_dist"]


def neg_nll(estimator: Any, X: Any, y: Any) -> float:
    """Mean log-likelihood of ``y`` (the negative NLL), in the targets' original units."""
    final, X = _final_step(estimator, X)
    return float(np.mean(final.log_likelihood(X, np.asarray(y, dtype=np.float64))))


def neg_crps(estimator: Any, X: Any, y: Any) -> float:
    """Minus the mean continuous ranked probability score of ``y`` (one target)."""
    final, X = _final_step(estimator, X)
    return -float(np.mean(final.predict_dist(X).crps(np.asarray(y, dtype=np.float64))))


def pipeline_dist(pipeline: Any, X: Any) -> Any:
    """``predict_dist`` through a scikit-learn ``Pipeline``: the final estimator's predictive
    distribution of ``X`` after every transforming step."""
    final, X = _final_step(pipeline, X)
    return final.predict_dist(X)


def _final_step(estimator: Any, X: Any) -> tuple[Any, Any]:
    """A pipeline's final estimator and ``X`` passed through its other steps; anything else as is."""
    if hasattr(estimator, "steps") and hasattr(estimator, "_final_estimator"):
        for _, step in estimator.steps[:-1]:
            if step is not None and step != "passthrough":
                X = step.transform(X)
        return estimator._final_estimator, X
    return estimator, X
