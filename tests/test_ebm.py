"""ConditionalEBM: the broadcast energy head equals the plain concatenation; detach options."""

from __future__ import annotations

import pytest
import torch
from conftest import graph_nodes

from ebreg import fast_paths
from ebreg._fast import feature_major
from ebreg.config import ModelConfig
from ebreg.ebm import ConditionalEBM, EnergyHead
from ebreg.nn import linear_over_rows


@pytest.mark.parametrize("d", [1, 3])
def test_split_joint_layer_equals_linear_on_concatenation(d: int) -> None:
    torch.manual_seed(0)
    ebm = ConditionalEBM.from_config(ModelConfig(input_dim=2, target_dim=d), with_proposal=False).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    ys = torch.randn(7, 5, d, dtype=torch.float64)
    scores = ebm.log_unnormalized(x, ys)
    assert scores.shape == (7, 5)
    # the plain computation: features copied to every candidate, Linear on [h, u]
    e = ebm.energy
    h = ebm.features(x).unsqueeze(0).expand(7, 5, -1)
    z = torch.relu(e.joint(torch.cat([h, e.target_net(ys)], -1)))
    plain = e.out(e.blocks(z)).squeeze(-1)
    assert torch.allclose(scores, plain, atol=1e-12)
    # (n, D) targets give (n,) scores, equal to the M = 1 case
    assert torch.allclose(ebm.log_unnormalized(x, ys[0]), scores[0])


def test_reference_toy_architecture_parameter_count() -> None:
    ebm = ConditionalEBM.from_config(ModelConfig(), with_proposal=True)
    # g: 1*10+10 + 10*10+10; f: 1*10+10 + 10*10+10 + 20*10+10 + 10*10+10 + 10+1;
    # q: 3 * (10*10+10) + 2 * (10*4+4) + (10*4+4)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(ebm.feature_net) == 130
    assert n(ebm.energy) == 461
    assert n(ebm.proposal) == 3 * 110 + 3 * 44


@pytest.mark.parametrize("detach", [True, False])
def test_proposal_reads_detached_features_by_default(detach: bool) -> None:
    torch.manual_seed(0)
    ebm = ConditionalEBM.from_config(ModelConfig(detach_proposal_features=detach))
    x = torch.randn(4, 1)
    q = ebm.proposal_distribution(ebm.features(x))
    q.log_prob(torch.randn(4, 1)).sum().backward()
    reached = any(p.grad is not None and p.grad.abs().sum() > 0 for p in ebm.feature_net.parameters())
    assert reached is (not detach)


@pytest.mark.parametrize("detach", [True, False])
def test_energy_head_reads_detached_features_when_asked(detach: bool) -> None:
    torch.manual_seed(0)
    ebm = ConditionalEBM.from_config(ModelConfig(detach_proposal_features=False, detach_energy_features=detach))
    x = torch.randn(4, 1)
    ebm.log_unnormalized(x, torch.randn(3, 4, 1)).sum().backward()
    reached = any(p.grad is not None and p.grad.abs().sum() > 0 for p in ebm.feature_net.parameters())
    assert reached is (not detach)
    assert all(p.grad is not None for p in ebm.energy.parameters())  # the head itself still learns


def test_features_detached_from_both_heads_are_refused() -> None:
    with pytest.raises(ValueError, match="leave the feature network untrained"):
        ModelConfig(detach_energy_features=True)  # detach_proposal_features is True by default


def test_model_without_proposal_says_so() -> None:
    ebm = ConditionalEBM.from_config(ModelConfig(), with_proposal=False)
    with pytest.raises(RuntimeError, match="no learned proposal"):
        ebm.proposal_distribution(torch.zeros(1, 10))


def test_residual_energy_starts_as_its_proposal_and_never_trains_it() -> None:
    torch.manual_seed(0)
    ebm = ConditionalEBM.from_config(ModelConfig(residual_energy=True, detach_proposal_features=False))
    ebm.y_scaling.fit_(3 * torch.randn(50, 1) + 2)  # scores and densities in original units
    x, y = torch.randn(4, 1), torch.randn(7, 4, 1)
    h = ebm.features(x)
    q = ebm.proposal_distribution(h)
    scores = ebm.log_unnormalized(None, y, h=h)
    torch.testing.assert_close(scores, q.log_prob(y))  # zero head: p = q, log Z = 0
    scores.sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in ebm.proposal.parameters())
    assert ebm.energy.out.weight.grad.abs().sum() > 0  # the correction itself learns
    with pytest.raises(ValueError, match="residual_energy needs a learned proposal"):
        ConditionalEBM(ebm.feature_net, ebm.energy, None, residual_energy=True)


@pytest.mark.parametrize("input_major", [False, True])  # candidates as GaussianMixture.sample lays them out
@pytest.mark.parametrize("chunks", [1, 4, 8])  # 6 inputs: groups of 6, 2 (3 groups) and 1
@pytest.mark.parametrize("target_dim, hidden, blocks", [(1, (10, 10), 1), (3, (16,), 2), (2, (), 0)])
def test_feature_major_head_equals_the_plain_computation(target_dim: int, hidden: tuple, blocks: int,
                                                         chunks: int, input_major: bool) -> None:
    torch.manual_seed(0)
    head = EnergyHead(7, target_dim, hidden, 12, blocks)
    h = torch.randn(6, 7, requires_grad=True)
    y = torch.randn(6, target_dim, 33).permute(2, 0, 1) if input_major else torch.randn(33, 6, target_dim)
    assert feature_major.suits(head)
    fast = feature_major.scores(head, h, y, chunks)
    with fast_paths(feature_major_head=False):
        plain = head(h, y)
    assert fast.shape == (33, 6)
    assert "FeatureMajorHeadBackward" in graph_nodes(head(h, y))  # the default path
    assert torch.allclose(fast, plain, atol=1e-5)
    assert "FeatureMajorHeadBackward" in type(fast.grad_fn.next_functions[0][0].next_functions[0][0]).__name__
    with torch.no_grad():  # without gradients: the same layers, nothing kept for a backward
        assert torch.equal(feature_major.scores(head, h, y, chunks), fast.detach())
    with fast_paths(head_backward=False):  # autograd through the same layers
        by_autograd = feature_major.scores(head, h, y, chunks)
    assert "FeatureMajorHeadBackward" not in graph_nodes(by_autograd)
    torch.testing.assert_close(by_autograd, fast, rtol=0, atol=0)
    g_fast = torch.autograd.grad(fast.square().sum(), [h, *head.parameters()])
    g_plain = torch.autograd.grad(plain.square().sum(), [h, *head.parameters()])
    g_autograd = torch.autograd.grad(by_autograd.square().sum(), [h, *head.parameters()])
    for a, b, c in zip(g_fast, g_plain, g_autograd):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
        assert torch.allclose(a, c, atol=1e-5, rtol=1e-5)



@pytest.mark.parametrize("in_features, with_bias", [(1, True), (3, True), (3, False)])
def test_linear_over_rows_equals_linear_with_its_gradients(in_features: int, with_bias: bool) -> None:
    torch.manual_seed(0)
    weight = torch.randn(6, in_features, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True) if with_bias else None
    v = torch.randn(40, 5, in_features, dtype=torch.float64)
    params = [weight] + ([bias] if with_bias else [])
    fast, plain = linear_over_rows(weight, bias, v), torch.nn.functional.linear(v, weight, bias)
    assert fast.shape == (40, 5, 6) and torch.allclose(fast, plain, rtol=1e-12)
    g = torch.randn(40, 5, 6, dtype=torch.float64)
    grads_fast, grads_plain = (torch.autograd.grad((out * g).sum(), params) for out in (fast, plain))
    for a, b in zip(grads_fast, grads_plain):
        assert torch.allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("hidden", [(16, 16), ()])
def test_row_major_head_equals_its_layers_applied_one_by_one(hidden: tuple) -> None:
    torch.manual_seed(0)
    head = EnergyHead(7, 3, hidden, 40, 1).double()
    h, y = torch.randn(5, 7, dtype=torch.float64), torch.randn(33, 5, 3, dtype=torch.float64)
    assert not feature_major.suits(head)
    w_h, w_u = head.joint.weight.split([7, head.joint.in_features - 7], 1)
    linear = torch.nn.functional.linear
    z = torch.relu(linear(h, w_h, head.joint.bias) + linear(head.target_net(y), w_u))
    plain = head.out(head.blocks(z)).squeeze(-1)
    fast = head(h, y)
    assert torch.allclose(fast, plain, rtol=1e-12)
    params = list(head.parameters())
    for a, b in zip(torch.autograd.grad(fast.sum(), params), torch.autograd.grad(plain.sum(), params)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_largest_divisor_up_to() -> None:
    divisor = feature_major.largest_divisor_up_to
    assert [divisor(n, 8) for n in (32, 16, 12, 9, 7, 1, 0)] == [8, 8, 6, 3, 7, 1, 1]
    assert divisor(31, 8) == 1 and divisor(5, 3) == 1


def test_head_chunks_follow_the_threads() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert feature_major.chunk_count(torch.zeros(1)) == 1
        torch.set_num_threads(2)
        assert feature_major.chunk_count(torch.zeros(1)) == 2 * feature_major.CHUNKS_PER_THREAD
        with fast_paths(batched_head=False):
            assert feature_major.chunk_count(torch.zeros(1)) == 1
    finally:
        torch.set_num_threads(threads)


def test_scores_and_proposal_stay_float32_under_bf16_autocast() -> None:
    model = ConditionalEBM.from_config(ModelConfig())
    x, y = torch.randn(4, 1), torch.randn(16, 4, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model.features(x)
        scores = model.log_unnormalized(None, y, h=h)
        q = model.proposal_distribution(h)
        log_q = q.log_prob(y)
    assert scores.dtype == torch.float32 and log_q.dtype == torch.float32
    assert q.loc.dtype == torch.float32 and torch.isfinite(scores).all()


def test_a_residual_energy_given_the_proposal_density_scores_as_when_it_computes_it() -> None:
    torch.manual_seed(0)
    ebm = ConditionalEBM.from_config(ModelConfig(residual_energy=True, detach_proposal_features=False))
    ebm.y_scaling.fit_(3 * torch.randn(50, 1) + 2)
    torch.nn.init.normal_(ebm.energy.out.weight)  # a trained-looking correction, not zero
    x, y = torch.randn(4, 1), 3 * torch.randn(7, 4, 1) + 2
    h = ebm.features(x)
    log_q = ebm.proposal_distribution(h).log_prob(y)
    torch.testing.assert_close(ebm.log_unnormalized(None, y, h=h, proposal_log_prob=log_q), ebm.log_unnormalized(None, y, h=h))
    torch.testing.assert_close(ebm.log_unnormalized(None, y[0], h=h, proposal_log_prob=log_q[0]), ebm.log_unnormalized(None, y[0], h=h))
