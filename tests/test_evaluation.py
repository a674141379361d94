"""Grid protocols: exact models give their exact NLL and zero KL; a short training run learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ebreg.app.evaluation import grid_nll, scorer, toy1_kl_to_truth
from ebreg.config import ModelConfig, TrainConfig
from ebreg.datasets import Toy1
from ebreg.engine import fit
from ebreg.mdn import MixtureDensityNetwork


def test_grid_nll_of_an_mdn_equals_its_exact_nll() -> None:
    torch.manual_seed(0)
    mdn = MixtureDensityNetwork.from_config(ModelConfig(min_scale=0.2)).double()
    x = torch.linspace(-2, 2, 50, dtype=torch.float64).view(-1, 1)
    y = torch.randn(50, dtype=torch.float64) * 0.5
    with torch.no_grad():
        exact = float(-mdn(x).log_prob(y.view(-1, 1)).mean())
    grid = torch.linspace(-30, 30, 20_001, dtype=torch.float64)
    assert grid_nll(scorer(mdn), x, y, grid) == pytest.approx(exact, abs=1e-6)


def test_kl_of_the_true_density_is_zero_and_of_a_wrong_one_positive() -> None:
    def true_score(x: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        lp = Toy1.true_log_prob(x.view(1, -1).numpy().astype(float), ys[..., 0].numpy().astype(float))
        return torch.as_tensor(np.log(np.exp(lp) + 1e-30))  # the protocol's truth: density + 1e-30

    assert toy1_kl_to_truth(true_score, Toy1.true_log_prob, points=256) == pytest.approx(0.0, abs=1e-9)
    flat = lambda x, ys: torch.zeros(ys.shape[:2])  # noqa: E731
    assert toy1_kl_to_truth(flat, Toy1.true_log_prob, points=256) > 1.0


@pytest.mark.slow
def test_a_short_joint_run_learns_toy1() -> None:
    data = Toy1.sample(2000, seed=0)
    x = torch.tensor(data.x, dtype=torch.float32).view(-1, 1)
    y = torch.tensor(data.y, dtype=torch.float32).view(-1, 1)
    cfg = TrainConfig(method="joint_nce", epochs=20, num_samples=256, seed=0)
    # 32-unit features: with the reference's 10 units some seeds end far off (toy.md: 8 of 40
    # joint runs on toy 1), so another random stream (a GPU's, say) could fail the test
    module = fit(ModelConfig(feature_hidden=(32, 32)), cfg, x, y, progress=False).module
    kl = toy1_kl_to_truth(scorer(module.ebm), Toy1.true_log_prob, points=512)
    kl_q = toy1_kl_to_truth(scorer(module.ebm, proposal=True), Toy1.true_log_prob, points=512)
    # a flat model sits above 1.0 (see the test above); 20 epochs get well below
    assert kl < 0.15 and kl_q < 0.2, (kl, kl_q)  # measured at this code: 0.067 and 0.102
