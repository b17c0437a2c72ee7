"""Seeded, reproducible training with progress callbacks and a cancel token."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.config import Config
from core.errors import InvalidParameterError, check_range
from core.measure import Metrics, evaluate

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig(Config):
    """How to train: epochs, learning rate, batch size, optimiser, seed."""

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    weight_decay: float = 0.0
    optimizer: str = "adam"
    warmup_epochs: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, low=1, high=10_000, kind=int)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        check_range("weight_decay", self.weight_decay, low=0, high=1)
        check_range("warmup_epochs", self.warmup_epochs, low=0, high=self.epochs, kind=int)
        check_range("seed", self.seed, low=0, kind=int)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError("optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)


@dataclass(frozen=True)
class TrainResult:
    """Per-epoch history, final test metrics and wall time."""

    history: list[dict[str, float]]
    metrics: Metrics
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "metrics": self.metrics.to_dict(),
                "seconds": self.seconds, "config": self.config}


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
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    config = config or TrainConfig()
    cb = Callbacks.ensure(callbacks)
    seed_everything(config.seed)
    X, y = train_split if train_split is not None else data.split("train")
    if len(X) == 0:
        raise InvalidParameterError("train split", "non-empty", 0)
    _check_model_matches(model, data)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
        batch_size=config.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                              weight_decay=config.weight_decay)
    else:
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * len(loader)
    warm = config.warmup_epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm)
                                                                         / max(steps - warm, 1))))
    loss_fn = loss_fn or (lambda m, xb, yb: F.cross_entropy(m(xb), yb))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            cb.check()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, xb, yb)
            if not torch.isfinite(loss):
                raise InvalidParameterError("lr", "small enough to keep the loss finite "
                                            "(training diverged)", config.lr)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
            total += loss.item() * len(yb)
            count += len(yb)
        if after_epoch is not None:
            after_epoch(model)
        model.eval()
        val = evaluate(model, data, "val") if len(data.y_val) else None
        row = {"epoch": epoch, "train_loss": total / count,
               "val_loss": val.loss if val else float("nan"),
               "val_accuracy": val.accuracy if val else float("nan")}
        history.append(row)
        cb.metrics(row)
        cb.progress(epoch / config.epochs, f"Epoch {epoch}/{config.epochs}: "
                    f"loss {row['train_loss']:.3f}, val acc {row['val_accuracy']:.3f}")
    model.eval()
    return TrainResult(history, evaluate(model, data, "test"), time.perf_counter() - start,
                       config.to_dict())


def _check_model_matches(model: Any, data: Any) -> None:
    """Fail early, with shapes named, when a model does not fit the data."""
    import torch

    shape = getattr(model, "input_shape", None)
    if shape and tuple(shape) != tuple(data.input_shape):
        raise InvalidParameterError("model input shape", f"equal to the data's "
                                    f"{list(data.input_shape)}", list(shape))
    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.from_numpy(data.X_train[:2]))
        except RuntimeError as exc:
            raise InvalidParameterError("model", f"able to take inputs of shape "
                                        f"{list(data.input_shape)} ({exc})", type(model).__name__)
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise InvalidParameterError("model output", f"(batch, {data.num_classes}) logits",
                                    list(out.shape))
