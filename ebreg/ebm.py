"""The conditional energy-based model ``p(y|x) ∝ exp f(x, y)`` with an optional learned proposal."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._shapes import as_candidates
from .config import ModelConfig
from .feature_major import FeatureMajorHead, head_layers
from .nn import ResidualBlock, feature_network, full_precision, linear_over_rows, mlp
from .proposals import GaussianMixture, MDNHead
from .scaling import AffineScaling

__all__ = ["EnergyHead", "ConditionalEBM"]


class EnergyHead(nn.Module):
    """``f(h, y)``: one score per (features, candidate target) pair.

    y goes through an MLP to ``u``; a joint Linear on ``[h, u]`` is split as
    ``W_h h + W_u u + b`` so that ``W_h h + b`` is computed once per x and broadcast over the
    M candidates; then residual blocks and a Linear to one score.

    Narrow heads (every width at most :attr:`FEATURE_MAJOR_MAX_WIDTH`) evaluate the M * n
    candidates feature-major: activations are ``(width, candidates)`` and each layer is a
    ``W @ Z`` product, about twice as fast on a CPU as the usual ``(candidates, width)``
    layout at width 10. On a CPU with several threads the inputs are also split into up to
    :meth:`chunks` groups, one batched product per layer: a single ``10 x 10`` by ``10 x N``
    product barely uses a second thread, a batch of them does. Wider heads use
    the usual layout, which is as fast there. ``benchmarks/results/speed.md`` times the toy
    model with the row-major layout and with one product per layer. All layouts give the
    same scores up to float rounding.
    """

    FEATURE_MAJOR_MAX_WIDTH = 32
    #: chunks per thread for the batched feature-major products
    CHUNKS_PER_THREAD = 4

    def __init__(
        self,
        feature_dim: int,
        target_dim: int,
        target_hidden: Sequence[int] = (10, 10),
        joint_width: int = 10,
        residual_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.feature_dim, self.target_dim = feature_dim, target_dim
        self.target_net = mlp(target_dim, target_hidden)
        u_dim = target_hidden[-1] if target_hidden else target_dim
        self.joint = nn.Linear(feature_dim + u_dim, joint_width)
        self.blocks = nn.Sequential(*(ResidualBlock(joint_width) for _ in range(residual_blocks)))
        self.out = nn.Linear(joint_width, 1)
        self.feature_major = max((*target_hidden, joint_width)) <= self.FEATURE_MAJOR_MAX_WIDTH

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        """``h``: ``(n, H)``; ``y``: ``(M, n, D)`` -> scores ``(M, n)``."""
        if not self.feature_major:
            return self.forward_reference(h, y)
        return self.forward_feature_major(h, y, self.chunks(h))

    @classmethod
    def chunks(cls, h: Tensor) -> int:
        """Most groups of inputs for the batched products: 1 off the CPU or on one thread."""
        threads = torch.get_num_threads()
        return cls.CHUNKS_PER_THREAD * threads if h.device.type == "cpu" and threads > 1 else 1

    def forward_feature_major(self, h: Tensor, y: Tensor, chunks: int) -> Tensor:
        """The scores ``(M, n)`` with activations ``(c, width, g M)``: the n inputs are split into
        c groups of g (c the largest divisor of n up to ``chunks``), the M candidates of each input
        contiguous. Candidates stored input-major, as :meth:`GaussianMixture.sample` draws them
        (``y.permute(1, 2, 0)`` contiguous), need no copy for D = 1 or g = 1; the scores come back
        in that layout too. When gradients are needed (outside autocast) the layers run as one
        autograd node with a hand-written backward (:class:`ebreg.feature_major.FeatureMajorHead`)."""
        m, n, d = y.shape
        c = largest_divisor_up_to(n, chunks)
        z = y.permute(1, 2, 0).reshape(c, n // c, d, m).transpose(1, 2).reshape(c, d, -1)
        # strides (D L, L, 1): on other strides torch takes a slow path for the first layer's products
        z = z.contiguous()
        w_h, w_u = self.joint.weight.split([self.feature_dim, self.joint.in_features - self.feature_dim], 1)
        per_x = torch.addmm(self.joint.bias.unsqueeze(1), w_h, h.T)  # (W, n), once per x
        per_x = per_x.view(-1, c, n // c).transpose(0, 1)  # (c, W, g)
        linears = [layer for layer in self.target_net if isinstance(layer, nn.Linear)]
        params = [t for layer in linears for t in (layer.weight, layer.bias)] + [w_u]
        params += [t for block in self.blocks for t in (block.linear.weight, block.linear.bias)]
        params += [self.out.weight, self.out.bias]
        if torch.is_grad_enabled() and not torch.is_autocast_enabled(h.device.type):
            scores = FeatureMajorHead.apply(z, per_x, len(linears), len(self.blocks), *params)
        else:
            scores = head_layers(z, per_x, len(linears), len(self.blocks), params)
        return scores.view(n, m).T

    def forward_reference(self, h: Tensor, y: Tensor) -> Tensor:
        """The same scores in the row-major layout ``(M, n, width)`` (wide heads, tests and the
        speed benchmark). The first product over the D-wide candidates is
        :func:`ebreg.nn.linear_over_rows`."""
        w_h, w_u = self.joint.weight.split([self.feature_dim, self.joint.in_features - self.feature_dim], 1)
        per_x = F.linear(h, w_h, self.joint.bias)  # (n, W)
        if len(self.target_net):
            first = self.target_net[0]
            u = self.target_net[1:](linear_over_rows(first.weight, first.bias, y))
            joint_u = F.linear(u, w_u)
        else:
            joint_u = linear_over_rows(w_u, None, y)
        z = torch.relu(per_x + joint_u)  # (M, n, W)
        return self.out(self.blocks(z)).squeeze(-1)


def largest_divisor_up_to(n: int, k: int) -> int:
    """The largest divisor of ``n`` that is at most ``k`` (at least 1)."""
    return next((c for c in range(min(n, k), 0, -1) if n % c == 0), 1)


class ConditionalEBM(nn.Module):
    """Conditional EBM: feature network g, energy head f and an optional proposal head q.

    Inputs and targets pass through :class:`AffineScaling` layers (identity until fitted):
    the networks see standardised values, while every method here takes and returns
    original units (scores, proposal samples and densities included).

    Args:
        feature_net: module mapping x ``(n, *input_shape)`` to h ``(n, H)``.
        energy: the energy head on ``(h, y)``.
        proposal: learned proposal head on h, or None (fixed-proposal training).
        detach_proposal_features: the proposal head reads ``sg[h]`` (the reference's
            choice), so the feature network is trained by the EBM loss alone.
        input_dim: columns of x for its scaling (1 broadcasts over any input shape).
        detach_energy_features: the energy head reads ``sg[h]``, so the feature network is
            trained through the proposal alone (with ``TrainConfig.proposal_nll_weight`` > 0,
            by the proposal's NLL as an MDN's would be).
        residual_energy: the score is ``energy(h, y) + sg[log q(y | x)]`` (the energy head
            learns a correction of the proposal, whose own losses alone train it); the head's
            last layer is zeroed, so an untrained model is its proposal.
    """

    def __init__(
        self,
        feature_net: nn.Module,
        energy: EnergyHead,
        proposal: MDNHead | None = None,
        detach_proposal_features: bool = True,
        input_dim: int = 1,
        detach_energy_features: bool = False,
        residual_energy: bool = False,
    ) -> None:
        super().__init__()
        self.feature_net = feature_net
        self.energy = energy
        self.proposal = proposal
        self.detach_proposal_features = detach_proposal_features
        self.detach_energy_features = detach_energy_features
        if residual_energy and proposal is None:
            raise ValueError("residual_energy needs a learned proposal")
        self.residual_energy = residual_energy
        if residual_energy:  # the head starts at zero: training starts from p = q
            nn.init.zeros_(energy.out.weight)
            nn.init.zeros_(energy.out.bias)
        self.x_scaling = AffineScaling(input_dim)
        self.y_scaling = AffineScaling(energy.target_dim)
        # p(y|x) ∝ exp(f / T): 1 in training; set afterwards by ebreg.calibration
        self.register_buffer("temperature", torch.ones(()))

    @classmethod
    def from_config(cls, config: ModelConfig, with_proposal: bool = True) -> "ConditionalEBM":
        """Build the MLP model that ``config`` describes (see :class:`ModelConfig`).

        With ``residual_energy`` the feature network and the proposal head are initialised in
        :class:`ebreg.mdn.MixtureDensityNetwork`'s order, so that under the same seed they start
        as that MDN does (and, trained by the proposal's NLL alone, stay equal to it).
        """
        h_dim = config.feature_hidden[-1]

        def proposal() -> MDNHead | None:
            if not with_proposal:
                return None
            return MDNHead(h_dim, config.target_dim, config.components, config.proposal_hidden,
                           config.min_scale, config.max_scale)

        if config.residual_energy:
            features = feature_network(config)
            head = proposal()
        else:  # the order of the earlier releases: their seeds keep their networks
            head = proposal()
            features = feature_network(config)
        energy = EnergyHead(h_dim, config.target_dim, config.target_hidden, config.joint_width, config.residual_blocks)
        return cls(features, energy, head, config.detach_proposal_features, config.input_dim,
                   config.detach_energy_features, config.residual_energy)

    def features(self, x: Tensor) -> Tensor:
        """``x``: ``(n, *input_shape)`` in original units -> h ``(n, H)``."""
        return self.feature_net(self.x_scaling(x))

    def log_unnormalized(self, x: Tensor | None, y: Tensor, h: Tensor | None = None,
                         log_q: Tensor | None = None) -> Tensor:
        """Scores ``f(x, y) / T``, a log-density up to a constant (T: the ``temperature``
        buffer, 1 unless :mod:`ebreg.calibration` set it).

        ``y``: ``(M, n, D)`` -> ``(M, n)``, or ``(n, D)`` -> ``(n,)``. Pass precomputed
        features as ``h`` (then ``x`` is ignored) to evaluate g once per x, and, when the caller
        has it, the learned proposal's log-density at ``y`` as ``log_q`` (shaped as the scores,
        original units): a ``residual_energy`` model adds it instead of computing it again.
        """
        if h is None:
            if x is None:
                raise ValueError("pass x or h")
            h = self.features(x)
        # float32 even under bf16 autocast: scores feed log-sum-exps
        y_scaled = self.y_scaling(as_candidates(y))
        energy = full_precision(self.energy(h.detach() if self.detach_energy_features else h, y_scaled))
        if self.residual_energy:  # + sg[log q], in the networks' standardised units
            if log_q is None:
                with torch.no_grad():  # no graph to build
                    scaled_log_q = self.proposal(h).log_prob(y_scaled)
            else:
                scaled_log_q = log_q.detach() - self.y_scaling.log_abs_det()
            energy = energy + scaled_log_q
        scores = torch.addcdiv(self.y_scaling.log_abs_det(), energy, self.temperature)  # log|det| + energy / T
        return scores.squeeze(0) if y.dim() == 2 else scores

    def proposal_distribution(self, h: Tensor) -> GaussianMixture:
        """The learned proposal ``q(y | x)``, in original units, from features ``h`` ``(n, H)``."""
        if self.proposal is None:
            raise RuntimeError("this model has no learned proposal (it was trained with a fixed one)")
        params = self.proposal.mixture_parameters(h.detach() if self.detach_proposal_features else h)
        return self.y_scaling.inverse_mixture(*params)
