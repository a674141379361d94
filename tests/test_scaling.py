"""Standardisation inside the models: original units in and out, densities still normalised."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy import integrate

from ebreg.config import ModelConfig
from ebreg.ebm import ConditionalEBM
from ebreg.inference import log_likelihood
from ebreg.mdn import MixtureDensityNetwork
from ebreg.scaling import AffineScaling


def test_fit_sets_mean_and_population_std_and_guards_constant_columns() -> None:
    data = torch.tensor([[1.0, 5.0], [3.0, 5.0]], dtype=torch.float64)
    s = AffineScaling(2).double().fit_(data)
    assert s.loc.tolist() == [2.0, 5.0] and s.scale.tolist() == [1.0, 1.0]
    assert s(data).tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="no rows"):
        AffineScaling(1).fit_(torch.zeros(0, 1))


def _scaled_ebm(seed: int = 0) -> ConditionalEBM:
    torch.manual_seed(seed)
    ebm = ConditionalEBM.from_config(ModelConfig(min_scale=0.05)).double()
    ebm.x_scaling.fit_(torch.tensor([[10.0], [14.0]], dtype=torch.float64))
    ebm.y_scaling.fit_(torch.tensor([[-300.0], [100.0]], dtype=torch.float64))  # loc -100, scale 200
    return ebm


def test_scores_and_proposal_are_in_original_units() -> None:
    ebm = _scaled_ebm()
    x = torch.tensor([[11.0], [13.5]], dtype=torch.float64)
    y = torch.tensor([[0.0], [250.0]], dtype=torch.float64)
    h = ebm.feature_net((x - 12.0) / 2.0)
    expected = ebm.energy(h, ((y + 100.0) / 200.0).unsqueeze(0)).squeeze(0) - math.log(200.0)
    assert torch.allclose(ebm.log_unnormalized(x, y), expected)
    q_std = ebm.proposal(h)
    q = ebm.proposal_distribution(ebm.features(x))
    # change of variables: log q(y) = log q_std((y - loc) / scale) - log scale
    assert torch.allclose(q.log_prob(y), q_std.log_prob((y + 100.0) / 200.0) - math.log(200.0))


def test_proposal_integrates_to_one_and_snis_likelihood_transforms_exactly() -> None:
    ebm = _scaled_ebm(1)
    x = torch.tensor([[12.5], [10.0]], dtype=torch.float64)
    q = ebm.proposal_distribution(ebm.features(x[:1]))
    total, _ = integrate.quad(lambda v: math.exp(q.log_prob(torch.tensor([[v]], dtype=torch.float64)).item()),
                              -3000, 3000, limit=400, points=q.loc.view(-1).tolist())
    assert total == pytest.approx(1.0, abs=1e-6)
    # the same network without scaling, fed standardised values, gives log p shifted by log scale
    plain = copy.deepcopy(ebm)
    plain.x_scaling, plain.y_scaling = AffineScaling(1).double(), AffineScaling(1).double()
    y = torch.tensor([[-50.0], [180.0]], dtype=torch.float64)
    ll = log_likelihood(ebm, x, y, 4096, torch.Generator().manual_seed(0))
    ll_std = log_likelihood(plain, (x - 12.0) / 2.0, (y + 100.0) / 200.0, 4096, torch.Generator().manual_seed(0))
    assert torch.allclose(ll, ll_std - math.log(200.0), atol=1e-9)


def test_mdn_returns_its_mixture_in_original_units() -> None:
    torch.manual_seed(0)
    mdn = MixtureDensityNetwork.from_config(ModelConfig()).double()
    mdn.y_scaling.fit_(torch.tensor([[0.0], [10.0]], dtype=torch.float64))  # loc 5, scale 5
    x = torch.zeros(1, 1, dtype=torch.float64)
    q, q_std = mdn(x), mdn.head(mdn.feature_net(x))
    assert torch.allclose(q.loc, 5.0 + 5.0 * q_std.loc) and torch.allclose(q.scale, 5.0 * q_std.scale)
