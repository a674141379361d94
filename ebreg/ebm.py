"""The conditional energy-based model ``p(y|x) ∝ exp f(x, y)`` with an optional learned proposal."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._fast import current as current_fast_paths
from ._fast import feature_major
from ._shapes import as_candidates
from .config import ModelConfig
from .nn import ResidualBlock, feature_network, full_precision, linear_over_rows, mlp
from .proposals import GaussianMixture, MDNHead
from .scaling import AffineScaling

__all__ = ["EnergyHead", "ConditionalEBM"]


class EnergyHead(nn.Module):
    """``f(h, y)``: one score per (features, candidate target) pair.

    y goes through an MLP to ``u``; a joint Linear on ``[h, u]`` is split as
    ``W_h h + W_u u + b`` so that ``W_h h + b`` is computed once per x and broadcast over the
    M candidates; then residual blocks and a Linear to one score.

    Narrow heads take a faster path with the same values,
    :func:`ebreg._fast.feature_major.scores` (flag ``feature_major_head``).

    Args:
        feature_dim: width H of the features h.
        target_dim: D.
        target_hidden: widths of the target MLP (empty: y enters the joint layer directly).
        joint_width: width of the joint layer and the residual blocks.
        residual_blocks: number of blocks ``z -> z + relu(W z + b)``.
    """

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

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        """``h``: ``(n, H)``; ``y``: ``(M, n, D)`` -> scores ``(M, n)``.

        Activations are ``(M, n, width)``; the first product over the D-wide candidates is
        :func:`ebreg.nn.linear_over_rows`.
        """
        if current_fast_paths().feature_major_head and feature_major.suits(self):
            return feature_major.scores(self, h, y)
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
    def from_config(cls, config: ModelConfig, with_proposal: bool = True) -> ConditionalEBM:
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
        else:  # proposal head first: a seed gives the same networks in every version of ebreg
            head = proposal()
            features = feature_network(config)
        energy = EnergyHead(h_dim, config.target_dim, config.target_hidden, config.joint_width, config.residual_blocks)
        return cls(features, energy, head, config.detach_proposal_features, config.input_dim,
                   config.detach_energy_features, config.residual_energy)

    def features(self, x: Tensor) -> Tensor:
        """``x``: ``(n, *input_shape)`` in original units -> h ``(n, H)``."""
        return self.feature_net(self.x_scaling(x))

    def log_unnormalized(self, x: Tensor | None, y: Tensor, h: Tensor | None = None,
                         proposal_log_prob: Tensor | None = None) -> Tensor:
        """Scores ``f(x, y) / T``, a log-density up to a constant (T: the ``temperature``
        buffer, 1 unless :mod:`ebreg.calibration` set it).

        ``y``: ``(M, n, D)`` -> ``(M, n)``, or ``(n, D)`` -> ``(n,)``. Pass precomputed
        features as ``h`` (then ``x`` is ignored) to evaluate g once per x, and, when the caller
        has it, this model's learned proposal's log-density at ``y`` as ``proposal_log_prob``
        (shaped as the scores, original units): a ``residual_energy`` model adds it instead of
        computing it again; other models ignore it.
        """
        if h is None:
            if x is None:
                raise ValueError("pass x or h")
            h = self.features(x)
        # float32 even under bf16 autocast: scores feed log-sum-exps
        y_scaled = self.y_scaling(as_candidates(y))
        energy = full_precision(self.energy(h.detach() if self.detach_energy_features else h, y_scaled))
        if self.residual_energy:  # + sg[log q], in the networks' standardised units
            if proposal_log_prob is None:
                with torch.no_grad():  # no graph to build
                    scaled_log_q = self.proposal(h).log_prob(y_scaled)
            else:
                scaled_log_q = proposal_log_prob.detach() - self.y_scaling.log_abs_det()
            energy = energy + scaled_log_q
        scores = torch.addcdiv(self.y_scaling.log_abs_det(), energy, self.temperature)  # log|det| + energy / T
        return scores.squeeze(0) if y.dim() == 2 else scores

    def proposal_distribution(self, h: Tensor) -> GaussianMixture:
        """The learned proposal ``q(y | x)``, in original units, from features ``h`` ``(n, H)``."""
        if self.proposal is None:
            raise RuntimeError("this model has no learned proposal (it was trained with a fixed one)")
        params = self.proposal.mixture_parameters(h.detach() if self.detach_proposal_features else h)
        return self.y_scaling.inverse_mixture(*params)
