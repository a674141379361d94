"""Procedural image datasets and the image backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ebreg.config import ModelConfig, TrainConfig
from ebreg.datasets import bar_orientations, cell_counts
from ebreg.ebm import ConditionalEBM
from ebreg.mdn import MixtureDensityNetwork


def test_cell_images_are_seeded_and_brighter_with_more_cells() -> None:
    a, b = cell_counts(200, seed=3), cell_counts(200, seed=3)
    assert a.x.shape == (200, 1, 64, 64) and a.x.dtype == np.float32
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.y.min() >= 1 and a.y.max() <= 20 and np.all(a.y == np.round(a.y))
    assert np.corrcoef(a.x.sum((1, 2, 3)), a.y)[0, 1] > 0.8


def test_a_bar_looks_the_same_after_a_half_turn() -> None:
    d = bar_orientations(20, seed=0, noise=0.0)
    assert np.allclose(d.x, np.rot90(d.x, 2, axes=(2, 3)), atol=1e-5)
    assert d.y.min() >= 0 and d.y.max() < 360


@pytest.mark.parametrize("cls", [ConditionalEBM, MixtureDensityNetwork])
def test_cnn_backbone_takes_images(cls) -> None:  # noqa: ANN001
    cfg = ModelConfig(backbone="cnn", feature_hidden=(16,), target_hidden=(8,), joint_width=8, proposal_hidden=(8,))
    model = cls.from_config(cfg)
    x = torch.as_tensor(cell_counts(3, seed=0).x)
    if cls is ConditionalEBM:
        assert model.features(x).shape == (3, 16)
        assert model.log_unnormalized(x, torch.zeros(3, 1)).shape == (3,)
    else:
        assert model(x).mean.shape == (3, 1)


def test_training_on_images_runs_and_is_finite() -> None:
    from ebreg.engine import fit

    d = cell_counts(64, seed=1)
    cfg = ModelConfig(backbone="cnn", feature_hidden=(16,), target_hidden=(8,), joint_width=8, proposal_hidden=(8,))
    result = fit(cfg, TrainConfig(epochs=1, num_samples=16), torch.as_tensor(d.x), torch.as_tensor(d.y).float(),
                 progress=False)
    assert all(torch.isfinite(p).all() for p in result.module.parameters())


def test_unknown_backbone_and_missing_torchvision_are_named() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        ModelConfig(backbone="vgg")
    cfg = ModelConfig(backbone="resnet18", feature_hidden=(16,))
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs torchvision"):
            ConditionalEBM.from_config(cfg)
    else:
        assert ConditionalEBM.from_config(cfg).features(torch.zeros(2, 1, 64, 64)).shape == (2, 16)
