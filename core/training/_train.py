"""Seeded, reproducible training with progress callbacks and a cancel token."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.config import SEED_MAX, Config
from core.errors import InvalidParameterError, check_range
from core.measure import Metrics, evaluate

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig(Config):
    """How to train: epochs, learning rate, batch size, optimiser, seed, and training options.

    ``precision``: ``fp32``, or ``bf16`` (bfloat16 autocast where the CPU computes it natively;
    elsewhere fp32 and a warning). ``grad_accum_steps``: optimiser step every N batches (an
    N× larger effective batch). ``grad_checkpointing``: recompute block activations in the
    backward pass (built-in vit/mlp). ``label_smoothing``: cross-entropy's. ``mixup_alpha`` /
    ``cutmix_alpha``: Beta(α, α) mixing of each batch (cutmix: images only; both: one of
    the two per batch). ``lr_schedule``: cosine, constant, step (×``lr_gamma`` every
    ``lr_step_epochs``, default epochs/3) or onecycle.
    """

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 0.0
    optimizer: str = "adam"
    warmup_epochs: int = 0
    seed: int = 0
    precision: str = "fp32"
    grad_accum_steps: int = 1
    grad_checkpointing: bool = False
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    lr_schedule: str = "cosine"
    lr_step_epochs: int | None = None
    lr_gamma: float = 0.1

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, low=1, high=10_000, kind=int)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        check_range("weight_decay", self.weight_decay, low=0, high=1)
        check_range("warmup_epochs", self.warmup_epochs, low=0, high=self.epochs, kind=int)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError("optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        self._check_options()

    def _check_options(self) -> None:
        from core.training._options import LR_SCHEDULES, PRECISIONS

        if self.precision not in PRECISIONS:
            raise InvalidParameterError("precision", f"one of {list(PRECISIONS)}", self.precision)
        check_range("grad_accum_steps", self.grad_accum_steps, low=1, high=1024, kind=int)
        if not isinstance(self.grad_checkpointing, bool):
            raise InvalidParameterError("grad_checkpointing", "true or false",
                                        self.grad_checkpointing)
        check_range("label_smoothing", self.label_smoothing, low=0, high=1, high_inclusive=False)
        check_range("mixup_alpha", self.mixup_alpha, low=0, high=100)
        check_range("cutmix_alpha", self.cutmix_alpha, low=0, high=100)
        if self.lr_schedule not in LR_SCHEDULES:
            raise InvalidParameterError("lr_schedule", f"one of {list(LR_SCHEDULES)}",
                                        self.lr_schedule)
        if self.lr_step_epochs is not None:
            check_range("lr_step_epochs", self.lr_step_epochs, low=1, high=self.epochs, kind=int)
        check_range("lr_gamma", self.lr_gamma, low=0, high=1, low_inclusive=False)
        if self.lr_schedule == "onecycle" and self.warmup_epochs:
            raise InvalidParameterError("warmup_epochs", "0 with lr_schedule 'onecycle' (it "
                                        "warms up by itself)", self.warmup_epochs)

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


@dataclass(frozen=True)
class TrainResult:
    """Per-epoch history (with the learning rate), final test metrics, wall time, the time of
    each epoch's pass, the peak memory growth while training and any warnings (e.g. bf16 not
    native here)."""

    history: list[dict[str, float]]
    metrics: Metrics
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    warnings: list[str] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        per_epoch = self.epoch_seconds
        return {"history": self.history, "metrics": self.metrics.to_dict(),
                "seconds": self.seconds, "epoch_seconds": per_epoch,
                "seconds_per_epoch": float(np.median(per_epoch)) if per_epoch else None,
                "peak_memory_mb": self.peak_memory_mb, "warnings": list(self.warnings),
                "config": self.config}


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


LossFn = Callable[[Any, Any, Any], Any]


def train(
    model: Any,
    data: Any,
    config: TrainConfig | None = None,
    *,
    callbacks: Callbacks | None = None,
    loss_fn: LossFn | None = None,
    after_step: Callable[[Any], None] | None = None,
    train_split: tuple[np.ndarray, np.ndarray] | None = None,
    after_epoch: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on the train split; evaluate on val each epoch, test at the end.

    ``loss_fn(model, x, y) -> loss`` replaces cross-entropy (distillation, QAT, movement
    pruning); ``after_step(model)`` runs after each optimiser step (e.g. to re-apply masks);
    ``train_split`` replaces the training arrays (e.g. a labelled fraction);
    ``after_epoch(model)`` runs after each epoch, before its validation (e.g. to re-estimate
    BatchNorm statistics or keep a checkpoint).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from core.training._options import PeakRSS, gradient_checkpointing, precision_context

    config = config or TrainConfig()
    cb = Callbacks.ensure(callbacks)
    seed_everything(config.seed)
    X, y = train_split if train_split is not None else data.split("train")
    if len(X) == 0:
        raise InvalidParameterError("train split", "non-empty", 0)
    check_model_fits(model, data)
    _check_options_fit(config, data, loss_fn)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
        batch_size=config.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    autocast, warnings = precision_context(config.precision)
    step = _Stepper(model, config, len(loader), loss_fn, autocast, after_step)
    history: list[dict[str, float]] = []
    seconds: list[float] = []
    start = time.perf_counter()
    with PeakRSS() as peak, gradient_checkpointing(model, config.grad_checkpointing):
        for epoch in range(1, config.epochs + 1):
            row = _epoch(model, data, loader, step, epoch, cb, after_epoch, seconds)
            history.append(row)
            cb.metrics(row)
            cb.progress(epoch / config.epochs, f"Epoch {epoch}/{config.epochs}: "
                        f"loss {row['train_loss']:.3f}, val acc {row['val_accuracy']:.3f}")
    model.eval()
    return TrainResult(history, evaluate(model, data, "test"), time.perf_counter() - start,
                       config.to_dict(), peak.peak_mb, warnings, seconds)


def _check_options_fit(config: TrainConfig, data: Any, loss_fn: LossFn | None) -> None:
    """Options that need the default loss or image data, refused clearly otherwise."""
    if loss_fn is not None:
        for name in ("label_smoothing", "mixup_alpha", "cutmix_alpha"):
            if getattr(config, name):
                raise InvalidParameterError(name, "0 when the method supplies its own loss "
                                            "(distillation, QAT, movement pruning)",
                                            getattr(config, name))
    if config.cutmix_alpha and getattr(data, "kind", "image") != "image":
        raise InvalidParameterError("cutmix_alpha", "0 for tabular data (CutMix pastes image "
                                    "patches; mixup_alpha mixes any inputs)",
                                    config.cutmix_alpha)


class _Stepper:
    """One batch: forward (autocast), loss (label smoothing, mixup/cutmix), backward, and an
    optimiser + scheduler step every ``grad_accum_steps`` batches."""

    def __init__(self, model: Any, config: TrainConfig, batches: int,
                 loss_fn: LossFn | None, autocast: Callable[[], Any],
                 after_step: Callable[[Any], None] | None) -> None:
        import torch

        from core.training._options import make_scheduler

        self.model, self.config, self.autocast, self.after_step = model, config, autocast, \
            after_step
        self.opt = _optimizer(model, config)
        self.accum = config.grad_accum_steps
        self.sched = make_scheduler(self.opt, config, math.ceil(batches / self.accum))
        self.loss_fn = loss_fn
        self.rng = np.random.default_rng(config.seed)
        self.pending = 0
        self.torch = torch

    def loss(self, xb: Any, yb: Any) -> Any:
        import torch.nn.functional as F

        c = self.config
        with self.autocast():
            if self.loss_fn is not None:
                return self.loss_fn(self.model, xb, yb).float()
            if c.mixes:
                from core.training._options import mix_batch

                xb, ya, yb2, lam = mix_batch(xb, yb, mixup=c.mixup_alpha, cutmix=c.cutmix_alpha,
                                             rng=self.rng)
                out = self.model(xb).float()
                return lam * F.cross_entropy(out, ya, label_smoothing=c.label_smoothing) + \
                    (1 - lam) * F.cross_entropy(out, yb2, label_smoothing=c.label_smoothing)
            out = self.model(xb).float()
            return F.cross_entropy(out, yb, label_smoothing=c.label_smoothing)

    def __call__(self, xb: Any, yb: Any, last: bool) -> float:
        if self.pending == 0:
            self.opt.zero_grad(set_to_none=True)
        loss = self.loss(xb, yb)
        if not self.torch.isfinite(loss):
            raise InvalidParameterError("lr", "small enough to keep the loss finite "
                                        "(training diverged)", self.config.lr)
        (loss / self.accum).backward()
        self.pending += 1
        if self.pending == self.accum or last:
            if self.pending < self.accum:  # a short last group: average over what it has
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.mul_(self.accum / self.pending)
            self.opt.step()
            self.sched.step()
            self.pending = 0
            if self.after_step is not None:
                self.after_step(self.model)
        return float(loss.item())


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                               weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def _epoch(model: Any, data: Any, loader: Any, step: _Stepper, epoch: int, cb: Callbacks,
           after_epoch: Callable[[Any], None] | None, seconds: list[float]
           ) -> dict[str, float]:
    """One pass over the loader (its time appended to ``seconds``), then validation; the row
    of the history."""
    started = time.perf_counter()
    model.train()
    total, count = 0.0, 0
    n = len(loader)
    for i, (xb, yb) in enumerate(loader):
        cb.check()
        total += step(xb, yb, last=i == n - 1) * len(yb)
        count += len(yb)
    seconds.append(time.perf_counter() - started)
    if after_epoch is not None:
        after_epoch(model)
    model.eval()
    val = evaluate(model, data, "val") if len(data.y_val) else None
    return {"epoch": epoch, "train_loss": total / count,
            "val_loss": val.loss if val else float("nan"),
            "val_accuracy": val.accuracy if val else float("nan"),
            "lr": float(step.opt.param_groups[0]["lr"])}


def check_model_fits(model: Any, data: Any, *, logits_for: str | None = None) -> None:
    """Fail early, with shapes named, when a model does not take the data's inputs or does not
    return one logit per class (``logits_for`` says which classes, in the message)."""
    import torch

    shape = getattr(model, "input_shape", None)
    if shape and tuple(shape) != tuple(data.input_shape):
        raise InvalidParameterError("model input shape", f"equal to the data's "
                                    f"{list(data.input_shape)}", list(shape))
    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.from_numpy(data.X_train[:2]))
        except (RuntimeError, AssertionError) as exc:  # AssertionError: torch.export's guards
            from core.measure._predictor import input_refusal

            refusal = input_refusal(str(exc))  # token ids, which no float row is; a fixed batch
            if refusal is not None:
                raise refusal from None
            raise InvalidParameterError("model", f"able to take inputs of shape "
                                        f"{list(data.input_shape)} ({str(exc)[:120]})",
                                        type(model).__name__) from None
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        rule = f"(batch, {data.num_classes}) logits" + (f" for {logits_for}" if logits_for
                                                         else "")
        raise InvalidParameterError("model output", rule, list(out.shape))
