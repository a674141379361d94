"""The non-finite-loss check: immediate on the CPU, deferred (no read in the step) elsewhere."""

from __future__ import annotations

import pytest
import torch

from ebreg.finite_check import DEFERRED_CHECK_EVERY, FiniteLossCheck, NonFiniteLossError


def _adam() -> tuple[torch.nn.Parameter, torch.optim.Adam]:
    p = torch.nn.Parameter(torch.ones(3))
    return p, torch.optim.Adam([p], lr=0.1, fused=True)


def _step(check: FiniteLossCheck, p: torch.nn.Parameter, opt: torch.optim.Adam, scale: float, step: int) -> None:
    terms = {"nce": (p * scale).sum(), "kl": p.sum() * 0.5}
    loss = terms["nce"] + terms["kl"]
    check(loss, terms, (step, 0, step))
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_immediate_check_raises_before_backward_with_the_terms() -> None:
    p, opt = _adam()
    check = FiniteLossCheck(None)
    _step(check, p, opt, 1.0, 0)
    after_one = p.detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"step 1 \(epoch 0, batch 1\): nce=inf, kl=1\.35"):
        _step(check, p, opt, float("inf"), 1)
    assert torch.equal(p.detach(), after_one)


def test_deferred_check_skips_the_bad_update_and_raises_at_the_read() -> None:
    p, opt = _adam()
    ref, ref_opt = _adam()
    check, plain = FiniteLossCheck(opt), FiniteLossCheck(None)
    _step(check, p, opt, 1.0, 0)
    _step(plain, ref, ref_opt, 1.0, 0)
    _step(check, p, opt, float("nan"), 1)  # no error yet: nothing is read in the step
    assert torch.equal(p.detach(), ref.detach())  # the NaN step changed nothing
    assert opt.state[p]["step"].item() == 1
    _step(check, p, opt, float("inf"), 2)  # a later bad step does not replace the first
    _step(check, p, opt, 2.0, 3)
    _step(plain, ref, ref_opt, 2.0, 3)
    assert torch.equal(p.detach(), ref.detach())  # good steps update as without the check
    with pytest.raises(NonFiniteLossError, match=r"step 1 \(epoch 0, batch 1\): nce=nan, kl=1\.35"):
        check.raise_if_seen()
    check.raise_if_seen()  # the record was consumed: nothing left to report


def test_deferred_check_reads_itself_every_so_many_steps() -> None:
    p, opt = _adam()
    check = FiniteLossCheck(opt)
    _step(check, p, opt, float("nan"), 0)
    for step in range(1, DEFERRED_CHECK_EVERY):
        _step(check, p, opt, 1.0, step)
    with pytest.raises(NonFiniteLossError, match=r"step 0 \(epoch 0, batch 0\): nce=nan"):
        _step(check, p, opt, 1.0, DEFERRED_CHECK_EVERY)


def test_deferred_check_without_a_bad_step_raises_nothing() -> None:
    p, opt = _adam()
    check = FiniteLossCheck(opt)
    for step in range(2 * DEFERRED_CHECK_EVERY + 3):
        _step(check, p, opt, 1.0, step)
    check.raise_if_seen()
    assert opt.state[p]["step"].item() == 2 * DEFERRED_CHECK_EVERY + 3
