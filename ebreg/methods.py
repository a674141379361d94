"""Training methods: one registry entry per method, saying which networks it trains, where its
candidates come from, which network predicts at test time, and how it computes its loss terms.

The training engine (:mod:`ebreg.engine`) builds networks and computes losses only through
:data:`REGISTRY`; adding a method is one entry here (its name also goes into the
:data:`ebreg.config.Method` type, which a test keeps equal to the registry's keys).

Every EBM method scores candidates the same way (:func:`score_candidates`): the observed
target and M samples of a proposal, scored by the EBM and by the proposal. The methods differ
in the proposal (``"fixed"``: centred at the target; ``"learned"``: the EBM's own MDN head;
``"separate"``: a separate MDN, the student of ``mdn_teacher``) and in the objectives of
:mod:`ebreg.objectives` they apply to the scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

from . import objectives
from ._fast import current as current_fast_paths
from ._fast.joint_nce import JointNCE
from .inference import effective_sample_fraction

if TYPE_CHECKING:
    from .config import TrainConfig
    from .ebm import ConditionalEBM
    from .mdn import MixtureDensityNetwork
    from .proposals import FixedGaussianMixture, GaussianMixture

__all__ = ["TrainingMethod", "Networks", "Scored", "REGISTRY", "score_candidates", "get"]

#: where a method's candidates come from (see the module's docstring)
ProposalKind = Literal["fixed", "learned", "separate"]
#: loss terms ``{name: (n,)}`` and, for EBM methods, the proposal samples' effective sample
#: size as a fraction of M per example ``(n,)`` (a diagnostic without gradient)
LossTerms = tuple[dict[str, Tensor], "Tensor | None"]


class Networks(Protocol):
    """What a method's loss reads: the networks a :class:`TrainingMethod` asked for (others None)
    and the random generator of the proposal samples."""

    ebm: ConditionalEBM | None
    mdn: MixtureDensityNetwork | None
    fixed: FixedGaussianMixture | None
    generator: torch.Generator | None


@dataclass(frozen=True)
class TrainingMethod:
    """One training method.

    Args:
        name: its name in :class:`ebreg.config.TrainConfig`.
        summary: one line for people.
        trains_ebm: builds a :class:`ebreg.ebm.ConditionalEBM` (with an MDN proposal head when
            ``proposal == "learned"``).
        proposal: where the candidates come from; ``"fixed"`` builds a
            :class:`ebreg.proposals.FixedGaussianMixture`, ``"separate"`` a
            :class:`ebreg.mdn.MixtureDensityNetwork`.
        test_model: the attribute of the network that predicts at test time (``"ebm"``, by SNIS
            with its learned proposal; ``"mdn"``, exactly), or None when there is no stand-alone
            test-time density.
        loss_terms: ``(networks, x (n, ...), y (n, D), config) -> (terms, ess)``.
    """

    name: str
    summary: str
    trains_ebm: bool
    proposal: ProposalKind
    test_model: Literal["ebm", "mdn"] | None
    loss_terms: Callable[[Networks, Tensor, Tensor, TrainConfig], LossTerms]


@dataclass(frozen=True)
class Scored:
    """EBM scores and proposal log-densities of the candidates, each ``(M + 1, n)``: row 0 the
    observed target (or, for NCE+, its perturbed copy), rows 1..M the proposal's samples."""

    scores: Tensor
    log_q: Tensor

    @property
    def f_data(self) -> Tensor:
        return self.scores[0]

    @property
    def f_samples(self) -> Tensor:
        return self.scores[1:]

    @property
    def log_q_data(self) -> Tensor:
        return self.log_q[0]

    @property
    def log_q_samples(self) -> Tensor:
        return self.log_q[1:]

    def ess_fraction(self) -> Tensor:
        """The samples' effective sample size as a fraction of M, ``(n,)``, without gradient."""
        with torch.no_grad():
            return effective_sample_fraction(self.f_samples - self.log_q_samples)


def _proposal(nets: Networks, kind: ProposalKind, x: Tensor, y: Tensor, h: Tensor) -> GaussianMixture:
    if kind == "fixed":
        return nets.fixed(y)
    if kind == "learned":
        return nets.ebm.proposal_distribution(h)
    return nets.mdn(x)


def score_candidates(nets: Networks, kind: ProposalKind, x: Tensor, y: Tensor, num_samples: int,
                     perturbation: float | None = None) -> Scored:
    """Draw M = ``num_samples`` candidates per row from the proposal of ``kind`` and score them
    and the observed targets ``y`` ``(n, D)`` with the EBM and the proposal.

    ``perturbation``: NCE+'s label noise: row 0 holds ``y + nu`` with ``nu`` drawn from the fixed
    proposal scaled by this factor, and ``log q`` there is the density of ``nu``
    (:meth:`ebreg.proposals.FixedGaussianMixture.perturb`).
    """
    ebm, gen = nets.ebm, nets.generator
    h = ebm.features(x)
    q = _proposal(nets, kind, x, y, h)
    if perturbation is None:
        # (M + 1, n, D): the target first, then M samples; one density evaluation for all
        candidates = q.sample((num_samples,), generator=gen, prepend=y)
        log_q = q.log_prob(candidates)
    else:
        samples = q.sample((num_samples,), generator=gen)  # (M, n, D), no grad
        y0, log_q_data = nets.fixed.perturb(y, perturbation, gen)
        candidates = torch.cat([y0.unsqueeze(0), samples])
        log_q = torch.cat([log_q_data.unsqueeze(0), q.log_prob(samples)])
    # a residual EBM adds its proposal's log-density of the candidates: hand it the ones just computed
    own = log_q if kind == "learned" else None
    return Scored(ebm.log_unnormalized(None, candidates, h=h, proposal_log_prob=own), log_q)


def _mdn(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    return {"nll": objectives.mdn_nll(nets.mdn(x).log_prob(y))}, None


def _mlis_fixed(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "fixed", x, y, cfg.num_samples)
    return {"ml_is": objectives.ml_is(s.f_data, s.f_samples, s.log_q_samples)}, s.ess_fraction()


def _nce_fixed(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "fixed", x, y, cfg.num_samples)
    return {"nce": objectives.nce(s.f_data, s.log_q_data, s.f_samples, s.log_q_samples)}, s.ess_fraction()


def _nceplus_fixed(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "fixed", x, y, cfg.num_samples, perturbation=cfg.nce_plus_beta)
    return {"nce": objectives.nce(s.f_data, s.log_q_data, s.f_samples, s.log_q_samples)}, s.ess_fraction()


def _with_proposal_nll(terms: dict[str, Tensor], s: Scored, cfg: TrainConfig) -> dict[str, Tensor]:
    """The joint methods' optional extra term: a multiple of the proposal's NLL at the data."""
    if cfg.proposal_nll_weight:
        terms["proposal_nll"] = cfg.proposal_nll_weight * objectives.mdn_nll(s.log_q_data)
    return terms


def _joint_mlis(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "learned", x, y, cfg.num_samples)
    terms = {"ml_is": objectives.joint_mlis(s.f_data, s.f_samples, s.log_q_samples)}
    return _with_proposal_nll(terms, s, cfg), s.ess_fraction()


def _joint_nce(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "learned", x, y, cfg.num_samples)
    if current_fast_paths().fused_joint_nce:  # both losses and the ESS in one pass
        ebm_loss, kl, ess = JointNCE.apply(s.scores, s.log_q)
    else:
        (ebm_loss, kl), ess = objectives.joint_nce(s.f_data, s.log_q_data, s.f_samples, s.log_q_samples), s.ess_fraction()
    terms = {"nce": ebm_loss}
    if cfg.proposal_kl_weight:
        terms["proposal_kl"] = kl if cfg.proposal_kl_weight == 1 else cfg.proposal_kl_weight * kl
    return _with_proposal_nll(terms, s, cfg), ess


def _mdn_teacher(nets: Networks, x: Tensor, y: Tensor, cfg: TrainConfig) -> LossTerms:
    s = score_candidates(nets, "separate", x, y, cfg.num_samples)
    teacher, student = objectives.teacher_student(s.f_data, s.log_q_data, s.f_samples, s.log_q_samples)
    return {"teacher_nce": teacher, "student": student}, s.ess_fraction()


_ENTRIES = (
    TrainingMethod("nce_fixed", "NCE against the fixed proposal centred at the target", True, "fixed", None,
                   _nce_fixed),
    TrainingMethod("mlis_fixed", "importance-sampled maximum likelihood with the fixed proposal", True, "fixed",
                   None, _mlis_fixed),
    TrainingMethod("nceplus_fixed", "NCE+ (perturbed targets) against the fixed proposal", True, "fixed", None,
                   _nceplus_fixed),
    TrainingMethod("joint_nce", "variant B: NCE for the EBM, the KL objective for its MDN proposal", True,
                   "learned", "ebm", _joint_nce),
    TrainingMethod("joint_mlis", "variant A: one ML-IS objective for the EBM and its proposal", True, "learned",
                   "ebm", _joint_mlis),
    TrainingMethod("mdn", "a mixture density network by maximum likelihood", False, "separate", "mdn", _mdn),
    TrainingMethod("mdn_teacher", "an MDN trained towards an EBM teacher learned alongside", True, "separate", "mdn",
                   _mdn_teacher),
)
#: every training method by name
REGISTRY: Mapping[str, TrainingMethod] = MappingProxyType({m.name: m for m in _ENTRIES})


def get(name: str) -> TrainingMethod:
    """The registry entry of method ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}") from None

