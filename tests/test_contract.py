"""The contract every model variant keeps: each training method, with a single-Gaussian and a
mixture proposal (and, for ``joint_nce``, the EBM that refines an MDN), for one- and
two-dimensional targets.

Per variant: loss terms and predictions have the documented shapes; every parameter of every
network gets a gradient; the speed paths give the plain computation's losses and gradients;
the test-time model written to a model folder and read back predicts the same; configs
repr as code that rebuilds them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from ebreg import fast_paths, methods, model_file
from ebreg.config import METHODS, REFINE_MDN_MODEL, REFINE_MDN_TRAIN, ModelConfig, TrainConfig
from ebreg.ebm import ConditionalEBM
from ebreg.engine import EBMTrainer
from ebreg.inference import log_likelihood
from ebreg.mdn import MixtureDensityNetwork

ROWS, SAMPLES = 5, 12
VARIANTS = [(method, kind) for method in METHODS for kind in ("single", "mixture")] + [("joint_nce", "refine")]


def _configs(method: str, kind: str, d: int) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig(input_dim=3, target_dim=d, components=1 if kind == "single" else 3, feature_hidden=(8,),
                        target_hidden=(6, 6), joint_width=6, proposal_hidden=(5,))
    train = TrainConfig(method=method, num_samples=SAMPLES, seed=1)
    if kind == "refine":
        model, train = dataclasses.replace(model, **REFINE_MDN_MODEL), dataclasses.replace(train, **REFINE_MDN_TRAIN)
    return model, train


def _trainer(method: str, kind: str, d: int) -> tuple[EBMTrainer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    module = EBMTrainer(*_configs(method, kind, d))
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(ROWS, 3, generator=g), torch.randn(ROWS, d, generator=g)
    module.fit_scaling(torch.randn(50, 3, generator=g), 2 + 3 * torch.randn(50, d, generator=g))
    return module, x, y


def _losses_and_grads(module: EBMTrainer, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    module.generator = torch.Generator().manual_seed(0)
    module.zero_grad(set_to_none=True)
    terms = module.losses(x, y)
    torch.stack([v.mean() for v in terms.values()]).sum().backward()
    return ({k: v.detach() for k, v in terms.items()},
            {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None})


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("method, kind", VARIANTS)
def test_losses_have_their_shapes_and_reach_every_parameter(method: str, kind: str, d: int) -> None:
    module, x, y = _trainer(method, kind, d)
    terms, grads = _losses_and_grads(module, x, y)
    assert terms and all(v.shape == (ROWS,) and torch.isfinite(v).all() for v in terms.values()), terms
    missing = [name for name, _ in module.named_parameters() if name not in grads]
    assert not missing, f"{method}/{kind}: no gradient reaches {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    for name, g in grads.items():
        if name == "ebm.energy.out.bias":
            # NCE and ML-IS are invariant to adding a constant to f (their normalisers absorb it)
            assert g.abs().max() < 1e-5
        elif kind == "single" and ".logits." in name:  # one component: its weight is 1 whatever the logit
            assert g.abs().max() == 0
        elif kind != "refine" or not name.startswith("ebm.energy."):  # a refining head starts at zero output
            assert g.abs().sum() > 0, f"{method}/{kind}: zero gradient at {name}"


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("method, kind", VARIANTS)
def test_speed_paths_give_the_plain_losses_and_gradients(method: str, kind: str, d: int) -> None:
    module, x, y = _trainer(method, kind, d)
    with fast_paths(True):
        fast_terms, fast_grads = _losses_and_grads(module, x, y)
    with fast_paths(False):
        plain_terms, plain_grads = _losses_and_grads(module, x, y)
    assert fast_terms.keys() == plain_terms.keys() and fast_grads.keys() == plain_grads.keys()
    for name in fast_terms:
        torch.testing.assert_close(fast_terms[name], plain_terms[name], rtol=1e-4, atol=1e-5)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("method, kind", VARIANTS)
def test_the_test_time_model_predicts_the_same_after_a_model_folder(method: str, kind: str, d: int,
                                                                     tmp_path: Path) -> None:
    module, x, y = _trainer(method, kind, d)
    model_config, _ = _configs(method, kind, d)
    entry = methods.get(method)
    model = module.test_model()
    if entry.test_model is None:  # fixed-proposal methods: the EBM's scores are what they keep
        assert model is None
        model, fresh = module.ebm, ConditionalEBM.from_config(model_config, with_proposal=False)
    elif entry.test_model == "ebm":
        fresh = ConditionalEBM.from_config(model_config, with_proposal=True)
    else:
        fresh = MixtureDensityNetwork.from_config(model_config)
    assert type(model) is type(fresh)
    model_file.write(tmp_path / "m", model.state_dict(), {"note": "contract"})
    meta, state = model_file.read(tmp_path / "m")
    model_file.load_weights(fresh, state, tmp_path / "m")
    assert meta["note"] == "contract"
    model.eval(), fresh.eval()
    with torch.no_grad():
        if isinstance(model, MixtureDensityNetwork):
            before, after = model(x).log_prob(y), fresh(x).log_prob(y)
            assert model(x).sample((4,)).shape == (4, ROWS, d)
        elif model.proposal is not None:
            before, after = (log_likelihood(m, x, y, 64, torch.Generator().manual_seed(3)) for m in (model, fresh))
        else:
            candidates = torch.randn(7, ROWS, d)
            before, after = model.log_unnormalized(x, candidates), fresh.log_unnormalized(x, candidates)
            assert before.shape == (7, ROWS)
    assert before.shape[-1] == ROWS and torch.isfinite(before).all()
    assert torch.equal(before, after)


@pytest.mark.parametrize("method, kind", VARIANTS)
def test_configs_and_networks_repr_as_what_they_are(method: str, kind: str) -> None:
    model_config, train_config = _configs(method, kind, 2)
    namespace = {"ModelConfig": ModelConfig, "TrainConfig": TrainConfig}
    assert eval(repr(model_config), namespace) == model_config
    assert eval(repr(train_config), namespace) == train_config
    module, _, _ = _trainer(method, kind, 2)
    text = repr(module)
    for name in ("ebm", "mdn", "fixed"):
        assert (f"({name}): " in text) == (getattr(module, name) is not None), (name, text)
