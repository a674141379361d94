"""Toy datasets: the recipe reproduces the reference arrays; true densities normalise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from ebreg.datasets import Toy1, Toy2, load_toy1_reference, load_toy2_reference


def test_toy2_recipe_reproduces_the_reference_arrays(toy_dir) -> None:
    ours, ref = Toy2.splits(), load_toy2_reference(toy_dir)
    for part in ("train", "val", "test"):
        assert ours[part].x.shape == ref[part].x.shape
        np.testing.assert_allclose(ours[part].x, ref[part].x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours[part].y, ref[part].y, rtol=0, atol=1e-12)


def test_toy2_recipe_leaves_the_global_rng_alone() -> None:
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    Toy2.recipe()
    assert np.array_equal(np.random.get_state()[1], before)


def test_toy2_true_nll_on_the_reference_test_set(toy_dir) -> None:
    test = load_toy2_reference(toy_dir)["test"]
    assert -Toy2.true_log_prob(test.x, test.y).mean() == pytest.approx(1.239, abs=1e-3)


@pytest.mark.parametrize("x", [0.05, 0.3, 0.5, 0.55, 0.8])
def test_toy2_true_density_integrates_to_one(x: float) -> None:
    total, _ = integrate.quad(lambda y: np.exp(Toy2.true_log_prob(x, y)), -12.5, 12.5, limit=400,
                              points=[-4.5, -3, -2, 0.5, 1, 4, 5.5, 8, 8.5])
    assert total == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("x", [-2.0, -0.3, 0.0, 1.7])
def test_toy1_true_density_integrates_to_one(x: float) -> None:
    total, _ = integrate.quad(lambda y: np.exp(Toy1.true_log_prob(x, y)), -3, 3, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_toy1_generator_matches_the_reference_statistically(toy_dir) -> None:
    ref = load_toy1_reference(toy_dir / "toy1_train.npz")
    ours = Toy1.sample(2000, seed=0)
    assert stats.ks_2samp(ref.x, ours.x).pvalue > 0.001
    assert stats.ks_2samp(ref.y[ref.x < 0], ours.y[ours.x < 0]).pvalue > 0.001
    assert stats.ks_2samp(ref.y[ref.x >= 0], ours.y[ours.x >= 0]).pvalue > 0.001


def test_toy1_samples_follow_the_true_density() -> None:
    data = Toy1.sample(20_000, seed=1)
    right = data.x >= 0
    cdf = stats.lognorm(s=0.25, loc=-1).cdf
    assert stats.kstest(data.y[right], cdf).pvalue > 0.001
    assert np.mean(np.abs(data.y[~right] - np.sin(data.x[~right])) < 0.3) == pytest.approx(0.8, abs=0.02)


def test_loader_names_a_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="toy2_train"):
        load_toy2_reference(tmp_path)
