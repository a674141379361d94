"""The energy head's per-candidate layers in the feature-major layout, with a hand-written backward.

The plain computation is :meth:`ebreg.ebm.EnergyHead.forward`: activations ``(M, n, width)``,
one ``nn.Linear`` per layer. Here, for narrow heads (every width at most
:data:`MAX_WIDTH`), activations are ``(c, width, L)``: c chunks of L = g M columns each, the M
candidates of each of the chunk's g inputs in turn, one batched ``W @ Z`` product per layer,
about twice as fast on a CPU at width 10. On a CPU with several threads the inputs are split
into up to :func:`chunk_count` groups: a single ``10 x 10`` by ``10 x N`` product barely uses
a second thread, a batch of them does. The layers are, in order: the target MLP's Linear +
ReLU pairs, the joint layer ``ReLU(W_u u + per_x)`` (``per_x = W_h h + b``, computed once per
x), residual blocks ``z + ReLU(W z + b)`` and the output Linear.

:class:`FeatureMajorHead` runs them as one autograd node whose backward accumulates the
residual gradients in place (``baddbmm_``), masks gradients by the ReLUs in place and forms
the output layer's rank-one gradient by broadcasting, with the values of autograd's
node-per-operation backward (``tests/test_ebm.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import current

if TYPE_CHECKING:
    from ..ebm import EnergyHead

__all__ = ["MAX_WIDTH", "CHUNKS_PER_THREAD", "suits", "chunk_count", "largest_divisor_up_to", "scores",
           "linear_chunked", "head_layers", "FeatureMajorHead"]

#: heads whose widths are all at most this run feature-major (wider ones are as fast row-major)
MAX_WIDTH = 32
#: chunks per thread for the batched products
CHUNKS_PER_THREAD = 4

_threshold_backward = torch.ops.aten.threshold_backward


def suits(head: EnergyHead) -> bool:
    """Whether ``head`` is narrow enough for the feature-major layout to pay."""
    widths = [layer.out_features for layer in head.target_net if isinstance(layer, torch.nn.Linear)]
    return max((*widths, head.joint.out_features)) <= MAX_WIDTH


def chunk_count(h: Tensor) -> int:
    """Most groups of inputs for the batched products: 1 off the CPU, on one thread or with
    ``batched_head`` off."""
    threads = torch.get_num_threads()
    if h.device.type != "cpu" or threads == 1 or not current().batched_head:
        return 1
    return CHUNKS_PER_THREAD * threads


def largest_divisor_up_to(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is at most ``k`` (at least 1)."""
    return next((c for c in range(min(n, k), 0, -1) if n % c == 0), 1)


def scores(head: EnergyHead, h: Tensor, y: Tensor, chunks: int | None = None) -> Tensor:
    """:meth:`ebreg.ebm.EnergyHead.forward`'s scores ``(M, n)`` for ``h`` ``(n, H)`` and ``y``
    ``(M, n, D)``, with activations ``(c, width, g M)``: the n inputs split into c groups of g
    (c the largest divisor of n up to ``chunks``, by default :func:`chunk_count`), the M
    candidates of each input contiguous. Candidates stored input-major, as
    :meth:`ebreg.proposals.GaussianMixture.sample` draws them (``y.permute(1, 2, 0)``
    contiguous), need no copy for D = 1 or g = 1; the scores come back in that layout too. When
    gradients are needed (outside autocast, with ``head_backward`` on) the layers run as one
    autograd node with a hand-written backward (:class:`FeatureMajorHead`)."""
    m, n, d = y.shape
    c = largest_divisor_up_to(n, chunk_count(h) if chunks is None else chunks)
    z = y.permute(1, 2, 0).reshape(c, n // c, d, m).transpose(1, 2).reshape(c, d, -1)
    # strides (D L, L, 1): on other strides torch takes a slow path for the first layer's products
    z = z.contiguous()
    w_h, w_u = head.joint.weight.split([head.feature_dim, head.joint.in_features - head.feature_dim], 1)
    per_x = torch.addmm(head.joint.bias.unsqueeze(1), w_h, h.T)  # (W, n), once per x
    per_x = per_x.view(-1, c, n // c).transpose(0, 1)  # (c, W, g)
    linears = [layer for layer in head.target_net if isinstance(layer, torch.nn.Linear)]
    params = [t for layer in linears for t in (layer.weight, layer.bias)] + [w_u]
    params += [t for block in head.blocks for t in (block.linear.weight, block.linear.bias)]
    params += [head.out.weight, head.out.bias]
    hand_written = current().head_backward and not torch.is_autocast_enabled(h.device.type)
    if torch.is_grad_enabled() and hand_written:
        out = FeatureMajorHead.apply(z, per_x, len(linears), len(head.blocks), *params)
    else:
        out = head_layers(z, per_x, len(linears), len(head.blocks), params)
    return out.view(n, m).T


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
