"""The one training engine: a LightningModule that trains any method from a frozen config."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from . import methods
from ._fast.allocator import keep_freed_memory_if_enabled
from ._fast.flat_parameters import optimizer_parameters, unflatten, zero_flat_grad
from ._shapes import as_targets, check_finite
from .config import ModelConfig, TrainConfig
from .ebm import ConditionalEBM
from .finite_check import FiniteLossCheck, NonFiniteLossError, defers_finite_check
from .inference import log_likelihood
from .mdn import MixtureDensityNetwork
from .proposals import FixedGaussianMixture

__all__ = ["NonFiniteLossError", "EBMTrainer", "fit", "FitResult", "KeepBestWeights"]


#: least number of proposal samples for the validation NLL of joint methods
VALIDATION_SAMPLES = 1024


class EBMTrainer(L.LightningModule):
    """Trains one method of :data:`ebreg.methods.REGISTRY` on ``(x, y)`` batches.

    Holds the networks the method asks for: ``ebm`` (a :class:`ConditionalEBM`; for
    ``mdn_teacher`` the teacher), ``mdn`` (a :class:`MixtureDensityNetwork`) and ``fixed`` (the
    fixed proposal); the others are None. One Adam optimiser over all parameters: every loss
    term reaches only its own network (the stop-gradients live in :mod:`ebreg.objectives`), so
    summing the terms equals separate updates.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig) -> None:
        super().__init__()
        self.model_config, self.train_config = model_config, train_config
        self.method = methods.get(train_config.method)
        learned = self.method.proposal == "learned"
        self.ebm: ConditionalEBM | None = None
        self.mdn: MixtureDensityNetwork | None = None
        self.fixed: FixedGaussianMixture | None = None
        if self.method.trains_ebm:
            self.ebm = ConditionalEBM.from_config(model_config, with_proposal=learned)
        if self.method.proposal == "separate":
            self.mdn = MixtureDensityNetwork.from_config(model_config)
        if self.method.proposal == "fixed":
            self.fixed = FixedGaussianMixture(train_config.fixed_sigmas)
        self.generator: torch.Generator | None = None
        self._train_sums: Tensor | None = None  # per-epoch sums of the loss terms over examples
        self._train_names: list[str] = []
        self._train_count = 0
        #: where one plain line per epoch goes (set by :func:`fit` for progress off a terminal)
        self.epoch_lines: Callable[[str], None] | None = None
        self.label = ""
        #: one record per training epoch: its number, every loss term's and the ESS fraction's mean, the validation NLL
        self.history: list[dict[str, float]] = []
        self._epoch_start = 0.0

    def test_model(self) -> ConditionalEBM | MixtureDensityNetwork | None:
        """The network that predicts at test time (None for fixed-proposal methods)."""
        name = self.method.test_model
        return None if name is None else getattr(self, name)

    # ------------------------------------------------------------------ losses
    def losses(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Per-example loss terms ``{name: (n,)}`` of the configured method for a batch."""
        return self.losses_and_ess(x, y)[0]

    def losses_and_ess(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """:meth:`losses` and, for EBM methods, the proposal samples' effective sample size as a
        fraction of M per example ``(n,)`` (see :class:`ebreg.methods.TrainingMethod`)."""
        return self.method.loss_terms(self, x, as_targets(y), self.train_config)

    @torch.no_grad()
    def fit_scaling(self, x: Tensor, y: Tensor, weight: Tensor | None = None) -> None:
        """Standardise every network's y, and x when it is a table ``(n, d)``, by these data
        (rows weighed by ``weight`` ``(n,)`` where given)."""
        for net in (self.ebm, self.mdn):
            if net is None:
                continue
            if x.dim() == 2:
                net.x_scaling.fit_(x, weight)
            net.y_scaling.fit_(y, weight)

    # --------------------------------------------------------------- lightning
    def on_fit_start(self) -> None:
        seed = self.train_config.seed * 7919 + 104729 * self.global_rank
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def on_train_start(self) -> None:
        deferred = defers_finite_check(self.device)
        self._finite_check = FiniteLossCheck(self.optimizers(use_pl_optimizer=False) if deferred else None)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y, *weight = batch
        per_example, ess = self.losses_and_ess(x, y)
        terms = {k: _mean(v, weight) for k, v in per_example.items()}
        loss = torch.stack(list(terms.values())).sum()
        self._finite_check(loss, terms, (self.global_step, self.current_epoch, batch_idx))
        if ess is not None:
            terms["ess_fraction"] = ess.mean()
        # epoch means accumulated here and logged once per epoch: a self.log per term and
        # step costs about a tenth of a small model's step
        sums = torch.stack(list(terms.values())).detach() * len(x)
        self._train_sums = sums if self._train_sums is None else self._train_sums + sums
        self._train_names, self._train_count = list(terms), self._train_count + len(x)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        self._finite_check.raise_if_seen()
        means = None
        if self._train_sums is not None:
            means = self._train_sums / self._train_count
            self.log_dict({f"train/{k}": v for k, v in zip(self._train_names, means)}, sync_dist=True)
        record: dict[str, float] = {"epoch": self.current_epoch + 1}
        if means is not None:
            record.update({k: float(v) for k, v in zip(self._train_names, means)})
        nll = self.trainer.callback_metrics.get("val/nll")
        if nll is not None:
            record["val_nll"] = float(nll)
        self.history.append(record)
        if self.epoch_lines is not None and self.trainer.is_global_zero:
            self.epoch_lines(self._epoch_line(means))
        self._train_sums, self._train_count = None, 0

    def _epoch_line(self, means: Tensor | None) -> str:
        """``[label] epoch e/E: term value, ..., val_nll value, seconds`` for the epoch just ended."""
        terms = [] if means is None else [f"{k} {float(v):.4f}" for k, v in zip(self._train_names, means)]
        nll = self.trainer.callback_metrics.get("val/nll")
        if nll is not None:
            terms.append(f"val_nll {float(nll):.4f}")
        head = f"{self.label} " if self.label else ""
        seconds = time.perf_counter() - self._epoch_start
        return f"{head}epoch {self.current_epoch + 1}/{self.trainer.max_epochs}: {', '.join(terms)}, {seconds:.2f} s"

    def validation_nll(self, x: Tensor, y: Tensor) -> Tensor | None:
        """Per-example NLL ``(n,)`` of the test-time model in original units, or None.

        An MDN: its exact NLL. An EBM: SNIS with the learned proposal at
        M = max(``num_samples``, 1024) (a small M biases log Z low and the NLL with it, most
        when the proposal is still poor), drawn with the same noise every epoch so that
        epochs compare. Fixed-proposal methods have no stand-alone test-time model: None.
        """
        model = self.test_model()
        if isinstance(model, MixtureDensityNetwork):
            return -model(x).log_prob(as_targets(y))
        if model is None:
            return None
        gen = torch.Generator(device=self.device).manual_seed(self.train_config.seed)
        m = max(self.train_config.num_samples, VALIDATION_SAMPLES)
        return -log_likelihood(model, x, y, m, gen, common_noise=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        x, y, *weight = batch
        terms = self.losses(x, y)
        loss = torch.stack([_mean(v, weight) for v in terms.values()]).sum()
        self.log("val/loss", loss, on_epoch=True, batch_size=len(x), sync_dist=True)
        nll = self.validation_nll(x, y)
        if nll is not None:
            self.log("val/nll", _mean(nll, weight), on_epoch=True, batch_size=len(x), sync_dist=True, prog_bar=True)

    def configure_optimizers(self):  # noqa: ANN201
        cfg = self.train_config
        opt = torch.optim.Adam(optimizer_parameters(self.parameters()), lr=cfg.lr, fused=True)
        if cfg.warmup_fraction == 0 and cfg.lr_schedule == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(lr_factor, cfg=cfg, total=total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        zero_flat_grad(optimizer)

    def teardown(self, stage: str) -> None:
        unflatten(self.parameters())  # own storage again (model files refuse shared memory)
        self.generator = None  # it lives on the fit's device; Lightning moves the module to the CPU

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,  # noqa: ANN001
                                    gradient_clip_algorithm=None) -> None:
        """Clip each network's gradient norm on its own (EBM, proposal head, MDN)."""
        limit = self.train_config.grad_clip_norm
        if limit is None:
            return
        for group in self._parameter_groups():
            torch.nn.utils.clip_grad_norm_(group, limit)

    def _parameter_groups(self) -> list[list[nn.Parameter]]:
        groups = []
        if self.ebm is not None:
            proposal = set(self.ebm.proposal.parameters()) if self.ebm.proposal is not None else set()
            groups.append([p for p in self.ebm.parameters() if p not in proposal])
            if proposal:
                groups.append(list(self.ebm.proposal.parameters()))
        if self.mdn is not None:
            groups.append(list(self.mdn.parameters()))
        return groups


def _loggers(log_dir: str | Path | None) -> list[Logger] | bool:
    """CSV learning curves in ``log_dir`` (and TensorBoard's when it is installed), or none."""
    if log_dir is None:
        return False
    loggers: list[Logger] = [CSVLogger(log_dir, name="", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(log_dir, name="", version="tensorboard"))
    except ModuleNotFoundError:
        pass
    return loggers


def lr_factor(step: int, cfg: TrainConfig, total: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` of ``total``.

    Linear warm-up over the first ``warmup_fraction`` of the steps, then constant or a
    cosine decay that reaches zero at step ``total``.
    """
    warmup = int(cfg.warmup_fraction * total)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.lr_schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


class LabelledBar(TQDMProgressBar):
    """Lightning's progress bars on standard error, the training bar named by ``label``
    (``member 2/5``) so that an ensemble's bars say which member is training."""

    def __init__(self, label: str, refresh_rate: int = 10) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.label = label

    def init_train_tqdm(self) -> Tqdm:
        return Tqdm(desc=self.label or self.train_description, position=2 * self.process_position,
                    disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stderr, smoothing=0,
                    bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer: L.Trainer, *args: object) -> None:
        super().on_train_epoch_start(trainer, *args)
        if self.label:
            self.train_progress_bar.set_description(f"{self.label} epoch {trainer.current_epoch}")

    def init_validation_tqdm(self) -> Tqdm:
        has_main_bar = self.trainer.state.fn != "validate"
        return Tqdm(desc=self.validation_description, position=2 * self.process_position + has_main_bar,
                    disable=self.is_disabled, leave=not has_main_bar, dynamic_ncols=True, file=sys.stderr,
                    bar_format=self.BAR_FORMAT)


class KeepBestWeights(Callback):
    """Keeps, in memory, the weights of the epoch with the lowest ``monitor`` and restores
    them when training ends (also when it is stopped early)."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch: int | None = None
        self._state: dict[str, Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        self._state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._state is not None:
            pl_module.load_state_dict(self._state)

    def state_dict(self) -> dict[str, object]:
        """Saved in checkpoints, so a resumed run still returns the best epoch's weights."""
        return {"best": self.best, "best_epoch": self.best_epoch, "weights": self._state}

    def load_state_dict(self, state_dict: dict[str, object]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self._state = state_dict["weights"]


@dataclass(frozen=True)
class FitResult:
    """A trained :class:`EBMTrainer`, the wall time its training took and, with early
    stopping, the kept epoch (0-based) and its validation NLL."""

    module: EBMTrainer
    train_seconds: float
    best_epoch: int | None = None
    best_val_nll: float | None = None


class RowBatches(TensorDataset):
    """A TensorDataset that hands the DataLoader a whole batch of rows in one indexing per
    tensor (``__getitems__``) instead of one row at a time and a stack: the same batches
    from the same sampler (DDP's included)."""

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        rows = torch.as_tensor(indices)
        return tuple(t[rows] for t in self.tensors)


def _as_is(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Collate function for :class:`RowBatches`: the batch is already made."""
    return batch


def _mean(per_example: Tensor, weight: list[Tensor]) -> Tensor:
    """The mean of ``per_example`` ``(n,)``, weighed by ``weight[0]`` when the batch has weights
    (they average 1 over their data set: a batch's weighted mean estimates the mean over the data
    set with each row repeated in proportion to its weight)."""
    return (per_example * weight[0]).mean() if weight else per_example.mean()


def _loader(x: Tensor, y: Tensor, weight: Tensor | None, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    tensors = (x, y) if weight is None else (x, y, weight / weight.mean())
    return DataLoader(RowBatches(*tensors), batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_as_is)


@contextmanager
def _quiet_lightning(verbose: bool) -> Iterator[None]:
    """Silence Lightning's start-up banner and its hint about DataLoader workers."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    if not verbose:
        log.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*GPU available but not used.*")
        warnings.filterwarnings("ignore", ".*`validation_step` but have no `val_dataloader`.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*is deprecated.*")
        try:
            yield
        finally:
            log.setLevel(level)


def fit(
    model_config: ModelConfig,
    train_config: TrainConfig,
    x: Tensor,
    y: Tensor,
    x_val: Tensor | None = None,
    y_val: Tensor | None = None,
    *,
    progress: bool = True,
    label: str = "",
    verbose: bool = False,
    log_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    sample_weight: Tensor | None = None,
    val_weight: Tensor | None = None,
    **trainer_kwargs,
) -> FitResult:
    """Train the method of ``train_config`` on ``x`` ``(n, ...)``, ``y`` ``(n,)`` or ``(n, D)``.

    Seeded by ``train_config.seed`` without touching the caller's global RNG. Extra keyword
    arguments go to ``lightning.Trainer`` (``accelerator``, ``devices``, ``strategy``, ...).
    With validation data and ``train_config.patience``, stops early on the validation NLL
    (:meth:`EBMTrainer.validation_nll`) and returns the best epoch's weights.
    Raises :class:`NonFiniteLossError` when a loss is not finite: on the CPU at once, on an
    accelerator within 50 steps or at the epoch's end (no update is made from that loss;
    see :class:`ebreg.finite_check.FiniteLossCheck`).

    ``progress``: on a terminal a progress bar named ``label`` on standard error; elsewhere (a
    log file, a pipe) one plain line per epoch on standard error (``label``, epoch, every
    training loss term, the validation NLL, seconds). Standard output is left to results.

    ``log_dir``: learning curves of every loss term, the proposal samples' effective sample
    size and the validation NLL, per epoch, as CSV (and for TensorBoard when it is
    installed). ``checkpoint_dir``: ``last.ckpt`` written after every epoch and every 50
    steps; with ``resume`` a run continues from it if it exists (after a crash or a kill),
    and early stopping still returns the best epoch's weights.
    ``sample_weight`` ``(n,)`` and ``val_weight``: non-negative row weights; every loss term,
    the standardisation and the validation NLL that stops early then weigh rows by them (a
    row of weight 2 counts as two), None: all rows alike.
    Multi-process training needs no change here: pass ``devices``, ``num_nodes`` and
    ``strategy="ddp"`` (each process draws its own proposal samples; gradients, logged
    metrics and early stopping are synchronised by Lightning). ``precision="bf16-mixed"``
    runs the networks' matrix products in bfloat16 while scores, proposal densities and
    log-sum-exps stay in float32.
    """
    y = _checked_data(model_config, x, y, x_val, y_val)
    sample_weight, val_weight = _checked_weight("sample_weight", sample_weight, x), _checked_weight("val_weight", val_weight, x_val)
    keep_freed_memory_if_enabled()
    seed = train_config.seed
    with torch.random.fork_rng(devices=[]), _quiet_lightning(verbose):
        torch.manual_seed(seed)
        module = EBMTrainer(model_config, train_config)
        if train_config.standardize:
            module.fit_scaling(x, y, sample_weight)
        train_loader = _loader(x, y, sample_weight, train_config.batch_size, True, seed)
        val = None if x_val is None or y_val is None else _loader(x_val, as_targets(y_val), val_weight, 4096, False, seed)
        keep = None
        callbacks: list[Callback] = []
        module.label = label
        terminal = progress and sys.stderr.isatty()
        if terminal:
            callbacks.append(LabelledBar(label, refresh_rate=10))
        elif progress:
            module.epoch_lines = partial(print, file=sys.stderr, flush=True)
        if val is not None and train_config.patience is not None:
            if module.method.test_model is None:
                raise ValueError(f"early stopping needs a test-time density; method "
                                 f"{train_config.method!r} (fixed proposal) has none")
            keep = KeepBestWeights("val/nll")
            callbacks += [EarlyStopping("val/nll", patience=train_config.patience, check_finite=False), keep]
        ckpt_path = None
        if checkpoint_dir is not None:
            callbacks += [ModelCheckpoint(checkpoint_dir, save_last=True, save_top_k=0, every_n_epochs=1),
                          ModelCheckpoint(checkpoint_dir, save_last=True, save_top_k=0, every_n_train_steps=50)]
            last = Path(checkpoint_dir) / "last.ckpt"
            ckpt_path = str(last) if resume and last.exists() else None
        trainer = L.Trainer(**{
            "max_epochs": train_config.epochs, "logger": _loggers(log_dir), "callbacks": callbacks,
            "enable_checkpointing": checkpoint_dir is not None, "enable_model_summary": False,
            "enable_progress_bar": terminal, "num_sanity_val_steps": 0, "gradient_clip_val": None,
            **trainer_kwargs})
        start = time.perf_counter()
        try:
            trainer.fit(module, train_loader, val, ckpt_path=ckpt_path, weights_only=False)
        except BaseException:  # Lightning skips the teardown hook that unflattens the parameters
            unflatten(module.parameters())
            raise
        seconds = time.perf_counter() - start
    module.epoch_lines = None
    module.eval()
    if keep is None:
        return FitResult(module, seconds)
    return FitResult(module, seconds, keep.best_epoch, keep.best)


def _checked_data(model_config: ModelConfig, x: Tensor, y: Tensor, x_val: Tensor | None,
                  y_val: Tensor | None) -> Tensor:
    """Refuse data that do not fit each other or the model; returns y as ``(n, D)``."""
    y = as_targets(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y need the same, non-zero number of rows: {x.shape[0]} vs {y.shape[0]}")
    if y.shape[1] != model_config.target_dim:
        raise ValueError(f"y has {y.shape[1]} columns but model_config.target_dim is "
                         f"{model_config.target_dim}")
    for name, values in (("x", x), ("y", y), ("x_val", x_val), ("y_val", y_val)):
        if values is not None:
            check_finite(name, values)
    return y


def _checked_weight(name: str, weight: Tensor | None, x: Tensor | None) -> Tensor | None:
    """Row weights ``(n,)``: finite, non-negative, not all zero; None where all are equal (the
    unweighted computation, exactly)."""
    if weight is None or x is None:
        return None
    weight = torch.as_tensor(weight, dtype=torch.float32, device=x.device)
    if weight.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape ({x.shape[0]},), one weight per row, got {tuple(weight.shape)}")
    check_finite(name, weight)
    if bool((weight < 0).any()) or not bool((weight > 0).any()):
        raise ValueError(f"{name} must be non-negative with at least one positive weight")
    return None if bool((weight == weight[0]).all()) else weight
