"""Training engine: every method's loss terms (shapes, gradients), seeding, failure reports."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ebreg import methods
from ebreg.config import ModelConfig, TrainConfig
from ebreg.engine import EBMTrainer, NonFiniteLossError, _loader, fit, lr_factor
from ebreg.inference import effective_sample_fraction


def _batch(d: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g), torch.randn(n, d, generator=g)


def test_variant_b_trains_the_feature_net_by_the_ebm_loss_only() -> None:
    torch.manual_seed(0)
    module = EBMTrainer(ModelConfig(input_dim=2), TrainConfig(method="joint_nce", num_samples=16))
    module.generator = torch.Generator().manual_seed(0)
    terms = module.losses(*_batch(1))
    terms["proposal_kl"].mean().backward()
    assert all(p.grad is None for p in module.ebm.feature_net.parameters())
    assert all(p.grad is None for p in module.ebm.energy.parameters())
    assert all(p.grad is not None for p in module.ebm.proposal.parameters())


@pytest.mark.parametrize("detach", [True, False])
def test_proposal_nll_term_is_the_weighted_nll_and_trains_features_only_when_undetached(detach: bool) -> None:
    torch.manual_seed(0)
    module = EBMTrainer(ModelConfig(input_dim=2, detach_proposal_features=detach),
                        TrainConfig(method="joint_nce", num_samples=16, proposal_nll_weight=0.3))
    module.generator = torch.Generator().manual_seed(0)
    x, y = _batch(1)
    terms = module.losses(x, y)
    assert set(terms) == {"nce", "proposal_kl", "proposal_nll"}
    q = module.ebm.proposal_distribution(module.ebm.features(x))
    torch.testing.assert_close(terms["proposal_nll"], -0.3 * q.log_prob(y))
    terms["proposal_nll"].mean().backward()
    assert all((p.grad is None) == detach for p in module.ebm.feature_net.parameters())
    assert all(p.grad is None for p in module.ebm.energy.parameters())


def test_proposal_kl_weight_scales_the_kl_term_and_zero_drops_it() -> None:
    torch.manual_seed(0)
    x, y = _batch(1)
    terms = {}
    for weight in (1.0, 0.25, 0.0):
        module = EBMTrainer(ModelConfig(input_dim=2),
                            TrainConfig(num_samples=16, proposal_nll_weight=1.0, proposal_kl_weight=weight))
        torch.manual_seed(1)
        module.ebm.load_state_dict(EBMTrainer(ModelConfig(input_dim=2), TrainConfig()).ebm.state_dict())
        module.generator = torch.Generator().manual_seed(0)
        terms[weight] = module.losses(x, y)
    torch.testing.assert_close(terms[0.25]["proposal_kl"], 0.25 * terms[1.0]["proposal_kl"])
    assert set(terms[0.0]) == {"nce", "proposal_nll"}


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="proposal_kl_weight = 0 needs proposal_nll_weight"):
        TrainConfig(proposal_kl_weight=0.0)
    with pytest.raises(ValueError, match="proposal_kl_weight applies to joint_nce only"):
        TrainConfig(method="joint_mlis", proposal_kl_weight=0.5)
    with pytest.raises(ValueError, match="proposal_kl_weight must be finite"):
        TrainConfig(proposal_kl_weight=math.inf)
    with pytest.raises(ValueError, match="proposal_nll_weight applies to the joint methods"):
        TrainConfig(method="mdn", proposal_nll_weight=1.0)
    with pytest.raises(ValueError, match="proposal_nll_weight must be finite"):
        TrainConfig(proposal_nll_weight=-1.0)
    with pytest.raises(ValueError, match="unknown method 'sgd'"):
        TrainConfig(method="sgd")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="fixed_sigmas"):
        TrainConfig(fixed_sigmas=())
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="warmup_fraction"):
        TrainConfig(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="feature_hidden"):
        ModelConfig(feature_hidden=(10, 0))
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"widht": 3})
    cfg = TrainConfig(method="nce_fixed", fixed_sigmas=(0.4, 3.2))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_learning_rate_factor() -> None:
    cfg = TrainConfig(warmup_fraction=0.1, lr_schedule="cosine")
    assert lr_factor(0, cfg, 100) == pytest.approx(0.1)  # warm-up: 10 steps
    assert lr_factor(9, cfg, 100) == pytest.approx(1.0)
    assert lr_factor(10, cfg, 100) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_factor(55, cfg, 100) == pytest.approx(0.5)  # halfway through the decay
    assert lr_factor(100, cfg, 100) == pytest.approx(0.0)
    assert lr_factor(5, TrainConfig.reference(), 100) == 1.0


def test_reference_settings() -> None:
    ref = TrainConfig.reference(method="nce_fixed")
    assert (ref.lr, ref.lr_schedule, ref.warmup_fraction, ref.method) == (1e-3, "constant", 0.0, "nce_fixed")
    assert (ref.epochs, ref.batch_size, ref.num_samples) == (75, 32, 1024)


def _tiny_fit(seed: int = 0, **kw):
    x, y = torch.linspace(-1, 1, 64).view(-1, 1), torch.sin(torch.linspace(-1, 1, 64))
    cfg = TrainConfig(epochs=2, batch_size=16, num_samples=32, seed=seed, **kw)
    return fit(ModelConfig(), cfg, x, y, progress=False)


def test_fit_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = _tiny_fit(), _tiny_fit()
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.module.parameters(), b.module.parameters()):
        assert torch.equal(pa, pb)
    c = _tiny_fit(seed=1)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.module.parameters(), c.module.parameters()))


def test_non_finite_loss_is_reported_with_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    entry = methods.get("joint_nce")

    def poisoned(nets, x, y, cfg):  # noqa: ANN001, ANN202
        calls["n"] += 1
        terms, ess = entry.loss_terms(nets, x, y, cfg)
        if calls["n"] == 3:
            terms["nce"] = terms["nce"] * float("nan")
        return terms, ess

    monkeypatch.setattr(methods, "get", lambda name: dataclasses.replace(entry, loss_terms=poisoned))
    with pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 0, batch 2\): nce=nan"):
        _tiny_fit()


def test_deferred_check_trains_identically_and_reports_the_bad_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accelerators' deferred check, forced on the CPU: the same weights as the immediate
    check, and a poisoned step reported at the epoch's end with its step and terms."""
    immediate = _tiny_fit()
    monkeypatch.setattr("ebreg.engine.defers_finite_check", lambda device: True)
    deferred = _tiny_fit()
    assert deferred.module._finite_check.skipping is not None
    for a, b in zip(immediate.module.parameters(), deferred.module.parameters()):
        assert torch.equal(a, b)
    test_non_finite_loss_is_reported_with_its_step(monkeypatch)


def test_fit_rejects_bad_data() -> None:
    with pytest.raises(ValueError, match="contains NaN"):
        fit(ModelConfig(), TrainConfig(), torch.tensor([[0.0], [float("nan")]]), torch.zeros(2), progress=False)
    with pytest.raises(ValueError, match="same, non-zero number of rows"):
        fit(ModelConfig(), TrainConfig(), torch.zeros(3, 1), torch.zeros(2), progress=False)
    with pytest.raises(ValueError, match="target_dim"):
        fit(ModelConfig(), TrainConfig(), torch.zeros(3, 1), torch.zeros(3, 2), progress=False)


def test_gradient_clipping_bounds_each_network_separately() -> None:
    torch.manual_seed(0)
    module = EBMTrainer(ModelConfig(input_dim=2), TrainConfig(method="joint_nce", grad_clip_norm=0.5))
    for p in module.parameters():
        p.grad = torch.full_like(p, 100.0)
    module.configure_gradient_clipping(None)
    groups = module._parameter_groups()
    assert len(groups) == 2  # EBM (features + energy head) and proposal head
    for group in groups:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in group]))
        assert norm.item() == pytest.approx(0.5, rel=1e-4)


def test_fit_with_validation_data_runs_the_validation_loop() -> None:
    x, y = torch.linspace(-1, 1, 64).view(-1, 1), torch.sin(torch.linspace(-1, 1, 64))
    cfg = TrainConfig(epochs=1, batch_size=16, num_samples=32)
    result = fit(ModelConfig(), cfg, x, y, x[:8], y[:8], progress=False)
    assert torch.isfinite(result.module.trainer.callback_metrics["val/loss"])
    with pytest.raises(ValueError, match="y_val contains NaN"):
        fit(ModelConfig(), cfg, x, y, x[:2], torch.tensor([0.0, float("nan")]), progress=False)


def test_bf16_mixed_precision_trains_with_float32_losses() -> None:
    from ebreg.datasets import Toy1

    d = Toy1.sample(256, 0)
    x = torch.as_tensor(d.x, dtype=torch.float32).view(-1, 1)
    y = torch.as_tensor(d.y, dtype=torch.float32).view(-1, 1)
    result = fit(ModelConfig(), TrainConfig(epochs=1, num_samples=64), x, y, progress=False, precision="bf16-mixed")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in result.module.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = result.module.losses(x[:8], y[:8])
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in terms.values())


def test_effective_sample_fraction_matches_the_normalised_weights() -> None:
    torch.manual_seed(0)
    log_w = 3 * torch.randn(50, 4)
    w = torch.softmax(log_w, 0)
    assert torch.allclose(effective_sample_fraction(log_w), 1 / (w.square().sum(0) * 50), rtol=1e-5)
    assert torch.allclose(effective_sample_fraction(torch.zeros(8, 2)), torch.ones(2))  # equal weights: 1
    one_heavy = torch.tensor([[0.0], [-1e4], [-1e4], [-1e4]])
    assert torch.allclose(effective_sample_fraction(one_heavy), torch.tensor([0.25]))  # one sample counts


def test_batched_row_loader_gives_the_batches_of_a_plain_loader() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x, y = torch.randn(70, 3), torch.randn(70, 1)
    plain = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(5))
    batched = list(_loader(x, y, None, 32, True, 5))
    assert len(batched) == 3
    for (xa, ya), (xb, yb) in zip(plain, batched):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_an_ebm_refining_an_mdn_trains_its_proposal_exactly_as_that_mdn() -> None:
    """residual_energy + proposal_kl_weight=0 + features trained by the proposal alone: with the
    same seed, the proposal and the features follow the stand-alone MDN's trajectory."""
    torch.manual_seed(0)
    x = torch.randn(96, 2)
    y = x[:, :1] - x[:, 1:] ** 2 + 0.3 * torch.randn(96, 1)
    model_cfg = ModelConfig(input_dim=2, residual_energy=True, detach_proposal_features=False,
                            detach_energy_features=True)
    common = dict(epochs=2, batch_size=32, num_samples=16, seed=3)
    ebm = fit(model_cfg, TrainConfig(proposal_nll_weight=1.0, proposal_kl_weight=0.0, **common), x, y,
              progress=False).module.ebm
    mdn = fit(model_cfg, TrainConfig(method="mdn", **common), x, y, progress=False).module.mdn
    for a, b in zip([*ebm.feature_net.parameters(), *ebm.proposal.parameters()],
                    [*mdn.feature_net.parameters(), *mdn.head.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ebm.energy.out.weight, torch.zeros_like(ebm.energy.out.weight))  # the correction trained
