"""Parameters flattened for the optimiser: views, gradients, an optimiser step, undoing it."""

from __future__ import annotations

import torch
from torch import nn

from ebreg._fast.flat_parameters import flatten, unflatten, zero_flat_grad
from ebreg.config import ModelConfig, TrainConfig
from ebreg.engine import fit


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))


def _loss(net: nn.Module) -> torch.Tensor:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    return net(x).square().sum()


def test_flattened_parameters_are_views_whose_gradients_land_in_the_flat_one() -> None:
    net, plain = _net(), _net()
    before = [p.detach().clone() for p in net.parameters()]
    [flat] = flatten(net.parameters())
    assert flat.numel() == sum(p.numel() for p in before)
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p, b) and p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    _loss(net).backward()
    _loss(plain).backward()
    grads = [p.grad for p in plain.parameters()]
    assert torch.equal(flat.grad, torch.cat([g.reshape(-1) for g in grads]))
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_adam_on_the_flat_parameter_steps_every_parameter_as_adam_on_each() -> None:
    net, plain = _net(), _net()
    opt = torch.optim.Adam(flatten(net.parameters()), lr=0.1)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=0.1)
    for _ in range(3):
        zero_flat_grad(opt)
        opt_plain.zero_grad()
        _loss(net).backward()
        _loss(plain).backward()
        opt.step()
        opt_plain.step()
    assert not torch.equal(net[0].weight, _net()[0].weight)  # it moved
    for p, q in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_gradients_set_to_none_elsewhere_are_attached_again() -> None:
    net = _net()
    opt = torch.optim.Adam(flatten(net.parameters()), lr=0.1)
    net.zero_grad()  # set_to_none, as Lightning does before training
    assert all(p.grad is None for p in net.parameters())
    zero_flat_grad(opt)
    _loss(net).backward()
    [flat] = opt.param_groups[0]["params"]
    assert flat.grad.abs().sum() > 0
    assert torch.equal(flat.grad, torch.cat([p.grad.reshape(-1) for p in net.parameters()]))


def test_mixed_dtypes_are_left_alone_and_unflatten_gives_own_storage() -> None:
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2, dtype=torch.float64))
    assert flatten([a, b]) == [a, b]
    net = _net()
    flatten(net.parameters())
    unflatten(net.parameters())
    for p in net.parameters():
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size() and p.grad is None


def test_a_fitted_model_owns_its_parameters() -> None:
    x = torch.randn(64, 1)
    module = fit(ModelConfig(), TrainConfig(epochs=1, num_samples=8), x, x.sin(), progress=False).module
    for p in module.parameters():
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size() and p.grad is None
