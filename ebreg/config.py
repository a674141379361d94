"""Frozen, self-validating configurations for models and training, written as JSON."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

__all__ = [
    "ModelConfig", "TrainConfig", "Method", "FixedProposalMethod", "JointMethod", "MDNMethod", "Backbone",
    "LRSchedule", "METHODS", "DEVICE_PATTERN", "REFINE_MDN_MODEL", "REFINE_MDN_TRAIN",
]

#: Training methods whose EBM learns against a fixed proposal centred at the target (prior
#: work; no stand-alone test-time model)
FixedProposalMethod = Literal["nce_fixed", "mlis_fixed", "nceplus_fixed"]
#: Training methods that learn an EBM and its MDN proposal together (variant B: ``joint_nce``,
#: the default of :class:`ebreg.EBMRegressor`; variant A: ``joint_mlis``)
JointMethod = Literal["joint_nce", "joint_mlis"]
#: Training methods whose test-time model is an MDN: by its NLL (``mdn``, the default of
#: :class:`ebreg.MDNRegressor`) or with an EBM teacher (``mdn_teacher``)
MDNMethod = Literal["mdn", "mdn_teacher"]
#: Every training method; what each one trains and how is in :mod:`ebreg.methods`
Method = Literal[FixedProposalMethod, JointMethod, MDNMethod]
METHODS: tuple[str, ...] = get_args(Method)
LRSchedule = Literal["constant", "cosine"]
#: what an estimator's ``device`` may name: the CPU, a CUDA device (``cuda`` or ``cuda:N``), Apple's
#: MPS, or the best one present (``auto``)
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps|auto")
#: feature networks: an MLP for tables, a small CNN or torchvision's ResNet-18 for images
Backbone = Literal["mlp", "cnn", "resnet18"]
#: ModelConfig and TrainConfig settings under which ``joint_nce`` trains an EBM that refines an
#: MDN (``EBMRegressor(refine_mdn=True)``): the proposal and the features learn from the NLL
#: alone, as a stand-alone MDN's, and the energy head a correction of that density
REFINE_MDN_MODEL = MappingProxyType({"residual_energy": True, "detach_proposal_features": False,
                                     "detach_energy_features": True})
REFINE_MDN_TRAIN = MappingProxyType({"proposal_nll_weight": 1.0, "proposal_kl_weight": 0.0})


def _one_of(name: str, value: object, options: Any) -> None:
    """Refuse a value that is not one of a ``Literal`` type's strings."""
    if value not in get_args(options):
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(get_args(options))}")


def _positive_ints(name: str, values: tuple[int, ...], allow_empty: bool = False) -> None:
    if (not values and not allow_empty) or any(int(v) != v or v < 1 for v in values):
        raise ValueError(f"{name} must be a tuple of positive integers, got {values!r}")


class _JsonConfig:
    """Mixin: ``to_dict`` / ``from_dict`` for frozen dataclasses with tuple fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # noqa: ANN206
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Network shapes. Defaults are the reference toy architecture (width 10).

    feature net g: with ``backbone="mlp"`` an MLP ``input_dim -> feature_hidden`` (ReLU after
    each layer); for images ``(n, input_channels, H, W)`` ``backbone="cnn"`` (a small
    convolutional net, :func:`ebreg.nn.small_cnn`) or ``"resnet18"`` (torchvision's, when
    installed), each followed by the ``feature_hidden`` MLP;
    energy head: y through ``target_hidden`` (ReLU), a joint layer ``[h, u] -> joint_width``,
    ``residual_blocks`` blocks ``z -> relu(Wz) + z``, then a Linear to one score;
    proposal head: three branches ``hidden -> proposal_hidden -> K*D | K*D | K``.
    Who trains g (:class:`ebreg.ebm.ConditionalEBM`): ``detach_proposal_features`` (the
    default, the paper's) lets only the EBM's loss reach it; ``detach_energy_features`` only
    the proposal's (pair it with ``detach_proposal_features=False`` and
    ``TrainConfig.proposal_nll_weight`` > 0); neither, both.
    ``residual_energy`` (not in the paper): the score is ``f(h, y) + sg[log q(y | x)]``, so the
    EBM learns a correction of its proposal; its head's last layer starts at zero, so training
    starts from p = q (needs a learned proposal).
    """

    input_dim: int = 1
    target_dim: int = 1
    feature_hidden: tuple[int, ...] = (10, 10)
    target_hidden: tuple[int, ...] = (10, 10)
    joint_width: int = 10
    residual_blocks: int = 1
    components: int = 4
    proposal_hidden: tuple[int, ...] = (10,)
    detach_proposal_features: bool = True
    detach_energy_features: bool = False
    residual_energy: bool = False
    min_scale: float = 1e-3
    max_scale: float = 1e3
    backbone: Backbone = "mlp"
    input_channels: int = 1

    def __post_init__(self) -> None:
        _one_of("backbone", self.backbone, Backbone)
        _positive_ints("input_channels", (self.input_channels,))
        _positive_ints("input_dim/target_dim/joint_width/components",
                       (self.input_dim, self.target_dim, self.joint_width, self.components))
        _positive_ints("feature_hidden", self.feature_hidden)
        _positive_ints("target_hidden", self.target_hidden, allow_empty=True)
        _positive_ints("proposal_hidden", self.proposal_hidden, allow_empty=True)
        if self.residual_blocks < 0:
            raise ValueError(f"residual_blocks must be >= 0, got {self.residual_blocks}")
        if not 0 < self.min_scale < self.max_scale < math.inf:
            raise ValueError(f"need 0 < min_scale < max_scale < inf, got "
                             f"{self.min_scale}, {self.max_scale}")
        if self.detach_proposal_features and self.detach_energy_features:
            raise ValueError("detach_proposal_features and detach_energy_features together leave the feature "
                             "network untrained; set detach_proposal_features=False with detach_energy_features")


@dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """Optimisation settings.

    The defaults keep the reference's budget and optimiser (Adam, batch 32,
    75 epochs, M = 1024) but not its constant learning rate of 1e-3: a linear warm-up over
    the first ``warmup_fraction`` of the steps to ``lr`` = 3e-3, then cosine decay to zero.
    On toy 1 this roughly halves the KL to the truth within the same budget
    (``benchmarks/results``); :meth:`reference` gives the reference's exact settings.

    ``fixed_sigmas`` are the fixed proposal's sigma_k (``*_fixed`` methods);
    ``nce_plus_beta`` scales them for the NCE+ label noise. ``grad_clip_norm`` clips each
    network's gradient norm on its own (None: off). ``lr_schedule``: ``"constant"`` or
    ``"cosine"`` (decay to zero at the last step). ``standardize``: the networks see x and y
    standardised with the training data's mean and standard deviation (the models still
    take and return original units; the fixed proposal's sigmas are in original units).
    ``patience``: with validation data, stop after this many epochs without a better
    validation NLL and keep the best epoch's weights (None: train all epochs, keep the last).
    ``proposal_nll_weight`` (joint methods, not in the paper; 0 = off): add this multiple of the
    proposal's NLL at the observed targets to its loss, so the proposal also learns from the
    data directly and, with ``ModelConfig(detach_proposal_features=False)``, so does the
    feature network. ``proposal_kl_weight`` (``joint_nce``): the multiple of the KL objective in
    the proposal's loss; 0 with ``proposal_nll_weight`` > 0 trains the proposal as a plain MDN
    (for an EBM that refines it, ``ModelConfig(residual_energy=True)``).
    """

    method: Method = "joint_nce"
    epochs: int = 75
    batch_size: int = 32
    lr: float = 3e-3
    num_samples: int = 1024
    fixed_sigmas: tuple[float, ...] = (0.1, 0.8)
    nce_plus_beta: float = 0.025
    grad_clip_norm: float | None = None
    warmup_fraction: float = 0.06
    lr_schedule: LRSchedule = "cosine"
    standardize: bool = True
    patience: int | None = None
    proposal_nll_weight: float = 0.0
    proposal_kl_weight: float = 1.0
    seed: int = 0

    @classmethod
    def reference(cls, **changes: Any) -> TrainConfig:
        """The official code's settings: Adam at a constant 1e-3, no warm-up, no clipping, raw
        (unstandardised) inputs and targets."""
        base = {"lr": 1e-3, "warmup_fraction": 0.0, "lr_schedule": "constant", "grad_clip_norm": None,
                "standardize": False}
        return cls(**{**base, **changes})

    def __post_init__(self) -> None:
        _one_of("method", self.method, Method)
        _positive_ints("epochs/batch_size/num_samples",
                       (self.epochs, self.batch_size, self.num_samples))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite, got {self.lr}")
        if not self.fixed_sigmas or any(not (s > 0 and math.isfinite(s)) for s in self.fixed_sigmas):
            raise ValueError(f"fixed_sigmas must be positive and finite, got {self.fixed_sigmas}")
        if not self.nce_plus_beta > 0:
            raise ValueError(f"nce_plus_beta must be positive, got {self.nce_plus_beta}")
        if self.patience is not None and (int(self.patience) != self.patience or self.patience < 1):
            raise ValueError(f"patience must be a positive integer or None, got {self.patience}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be positive or None, got {self.grad_clip_norm}")
        if not (self.proposal_nll_weight >= 0 and math.isfinite(self.proposal_nll_weight)):
            raise ValueError(f"proposal_nll_weight must be finite and >= 0, got {self.proposal_nll_weight}")
        if self.proposal_nll_weight and self.method not in get_args(JointMethod):
            raise ValueError(f"proposal_nll_weight applies to the joint methods ({', '.join(get_args(JointMethod))}), "
                             f"not to {self.method!r}")
        if not (self.proposal_kl_weight >= 0 and math.isfinite(self.proposal_kl_weight)):
            raise ValueError(f"proposal_kl_weight must be finite and >= 0, got {self.proposal_kl_weight}")
        if self.proposal_kl_weight != 1 and self.method != "joint_nce":
            raise ValueError(f"proposal_kl_weight applies to joint_nce only, not to {self.method!r}")
        if self.proposal_kl_weight == 0 and self.proposal_nll_weight == 0:
            raise ValueError("proposal_kl_weight = 0 needs proposal_nll_weight > 0: nothing would train the proposal")
        _one_of("lr_schedule", self.lr_schedule, LRSchedule)
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
