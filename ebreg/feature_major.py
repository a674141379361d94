"""The energy head's per-candidate layers in the feature-major layout, with a hand-written backward.

Activations are ``(c, width, L)``: c chunks of L = g M columns each, the M candidates of each
of the chunk's g inputs in turn, one batched ``W @ Z`` product per layer (see
:class:`ebreg.ebm.EnergyHead`). The layers are, in order: the target MLP's Linear + ReLU
pairs, the joint layer ``ReLU(W_u u + per_x)`` (``per_x = W_h h + b``, computed once per x),
residual blocks ``z + ReLU(W z + b)`` and the output Linear.

:class:`FeatureMajorHead` runs them as one autograd node whose backward accumulates the
residual gradients in place (``baddbmm_``), masks gradients by the ReLUs in place and forms
the output layer's rank-one gradient by broadcasting, with the values of autograd's
node-per-operation backward (``tests/test_ebm.py``); ``benchmarks/results/speed.md`` times
the toy model with autograd's backward instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["linear_chunked", "head_layers", "FeatureMajorHead"]

_threshold_backward = torch.ops.aten.threshold_backward


def linear_chunked(weight: Tensor, bias: Tensor, z: Tensor) -> Tensor:
    """``W z + b`` on each chunk: ``z`` ``(c, in, L)`` -> ``(c, out, L)``."""
    return torch.baddbmm(bias.unsqueeze(1), weight.expand(z.shape[0], -1, -1), z)


def head_layers(z: Tensor, per_x: Tensor, hidden: int, blocks: int, params: Sequence[Tensor],
                keep: list[Tensor] | None = None) -> Tensor:
    """Scores ``(c, 1, L)`` of candidates ``z`` ``(c, D, L)``: chunk c's L = g M columns hold the M
    candidates of each of its g inputs in turn; ``per_x`` ``(c, W, g)``, those inputs' joint terms.

    ``params``: the ``hidden`` target layers' (weight, bias), ``W_u``, the ``blocks`` residual
    layers' (weight, bias), the output (weight, bias). With ``keep``, every activation
    :class:`FeatureMajorHead` needs for its backward is appended to it.
    """
    c, width, g = per_x.shape
    # in-place ReLUs only on fresh results
    for i in range(hidden):
        z = linear_chunked(params[2 * i], params[2 * i + 1], z).relu_()
        if keep is not None:
            keep.append(z)
    z = torch.bmm(params[2 * hidden].expand(c, -1, -1), z)
    z.view(c, width, g, -1).add_(per_x.unsqueeze(-1))
    z = z.relu_()
    if keep is not None:
        keep.append(z)
    for i in range(blocks):
        j = 2 * hidden + 1 + 2 * i
        r = linear_chunked(params[j], params[j + 1], z).relu_()
        z = r + z
        if keep is not None:
            keep += [r, z]
    return linear_chunked(params[-2], params[-1], z)


class FeatureMajorHead(torch.autograd.Function):
    """:func:`head_layers` as one autograd node: ``apply(z, per_x, hidden, blocks, *params)``.

    ``z`` gets no gradient (the candidates are sampled, not learned); ``per_x`` and every
    parameter do.
    """

    @staticmethod
    def forward(ctx, z: Tensor, per_x: Tensor, hidden: int, blocks: int,  # noqa: ANN001
                *params: Tensor) -> Tensor:
        acts = [z]
        scores = head_layers(z, per_x, hidden, blocks, params, keep=acts)
        ctx.hidden, ctx.blocks, ctx.inputs = hidden, blocks, 4 + len(params)
        ctx.save_for_backward(per_x, *acts, *params)
        ctx.set_materialize_grads(False)  # no gradient for the scores: none for the parameters either
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor | None) -> tuple:  # noqa: ANN001
        hidden, blocks = ctx.hidden, ctx.blocks
        if grad is None:
            return (None,) * ctx.inputs
        per_x, *saved = ctx.saved_tensors
        acts, params = saved[: 2 + hidden + 2 * blocks], saved[2 + hidden + 2 * blocks:]
        c = grad.shape[0]
        grads: list[Tensor | None] = [None] * len(params)

        def weight_grad(d: Tensor, a: Tensor) -> Tensor:  # sum over chunks of d a^T
            return torch.bmm(d, a.transpose(1, 2)).sum(0)

        def transposed(w: Tensor) -> Tensor:
            return w.T.expand(c, -1, -1)

        grads[-2], grads[-1] = weight_grad(grad, acts[-1]), grad.sum((0, 2))
        d = grad * params[-2].view(1, -1, 1)  # rank one: the output layer's weight times the scores' gradient
        for i in reversed(range(blocks)):
            r, z_in, j = acts[hidden + 2 + 2 * i], acts[hidden + 1 + 2 * i], 2 * hidden + 1 + 2 * i
            dr = _threshold_backward(d, r, 0)
            grads[j], grads[j + 1] = weight_grad(dr, z_in), dr.sum((0, 2))
            d.baddbmm_(transposed(params[j]), dr)  # the skip connection's gradient plus the block's
        _threshold_backward.grad_input(d, acts[hidden + 1], 0, grad_input=d)
        grad_per_x = d.view(*per_x.shape, -1).sum(-1)  # (c, W, g): over each input's candidates
        grads[2 * hidden] = weight_grad(d, acts[hidden])
        for i in reversed(range(hidden)):
            d = torch.bmm(transposed(params[2 * i + 2]), d)
            _threshold_backward.grad_input(d, acts[i + 1], 0, grad_input=d)
            grads[2 * i], grads[2 * i + 1] = weight_grad(d, acts[i]), d.sum((0, 2))
        return (None, grad_per_x, None, None, *grads)
