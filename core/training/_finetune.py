"""Fine-tuning that never hands back a worse model than it was given.

After a structural change (pruning, a rebuilt layer) BatchNorm running statistics describe
activations that no longer exist; models trained with a small BN momentum (torchvision's
MobileNetV3 uses 0.01) cannot re-learn them in a short fine-tune. So the statistics are
re-estimated from a few hundred training rows, every epoch is scored on the validation
split, and the best state (including the one before any fine-tuning) is kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from core.callbacks import Callbacks
from core.errors import InvalidParameterError
from core.measure import evaluate
from core.training._train import TrainConfig, train

BN_ROWS = 512
LARGE_PARAMS = 1_000_000  # above this the default fine-tune learning rate is lowered


def batchnorm_layers(model: Any) -> list[Any]:
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats]


def recalibrate_batchnorm(model: Any, X: np.ndarray, *, rows: int = BN_ROWS,
                          batch_size: int = 64) -> int:
    """Re-estimate every BatchNorm's running mean/var over ``rows`` inputs (cumulative
    average, no gradients; torch's ``swa_utils.update_bn``). Returns how many BN layers."""
    import torch
    from torch.optim.swa_utils import update_bn

    layers = batchnorm_layers(model)
    if not layers or len(X) == 0:
        return 0
    was_training = model.training
    inputs = torch.from_numpy(np.ascontiguousarray(X[:rows]))
    with torch.no_grad():
        update_bn([(chunk,) for chunk in inputs.split(batch_size)], model)
    model.train(was_training)
    return len(layers)


def distillation_loss(logits: Any, teacher_logits: Any, labels: Any, *, alpha: float,
                      temperature: float, teacher_probs: Any = None) -> Any:
    """Hinton's loss: ``(1-α)·CE(labels) + α·T²·KL(teacher_T ‖ student_T)``, each averaged
    over the whole batch.

    The teacher is given as logits, or as temperature-softened probabilities
    (``teacher_probs``, e.g. several teachers averaged); with neither, only the label term.
    Rows labelled -1 (unlabelled transfer data) count in the soft term only.
    """
    import torch.nn.functional as F

    n = max(len(logits), 1)
    loss = logits.sum() * 0.0  # keeps the graph when no term applies
    if alpha < 1 and bool((labels >= 0).any()):
        loss = loss + (1 - alpha) * F.cross_entropy(logits, labels, ignore_index=-1,
                                                    reduction="sum") / n
    if alpha <= 0 or (teacher_logits is None and teacher_probs is None):
        return loss
    log_q = F.log_softmax(logits / temperature, dim=1)
    if teacher_probs is not None:
        soft = F.kl_div(log_q, teacher_probs, reduction="sum") / n
    else:
        soft = F.kl_div(log_q, F.log_softmax(teacher_logits / temperature, dim=1),
                        reduction="sum", log_target=True) / n
    return loss + alpha * temperature ** 2 * soft


@dataclass(frozen=True)
class FinetuneDefaults:
    """Fine-tune settings chosen for a model (``finetune_defaults``) and why."""

    epochs: int
    lr: float
    optimizer: str
    weight_decay: float
    distill_alpha: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_traits(model: Any) -> dict[str, Any]:
    """What the fine-tune defaults depend on: parameter count, attention, depthwise convs."""
    from torch import nn

    modules = list(model.modules())
    attention = any(isinstance(m, nn.MultiheadAttention)
                    or (hasattr(m, "qkv") and hasattr(m, "num_heads"))
                    or "attention" in type(m).__name__.lower() for m in modules)
    depthwise = any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
                    for m in modules)
    return {"params": int(sum(p.numel() for p in model.parameters())),
            "attention": attention, "depthwise": depthwise}


def finetune_defaults(model: Any) -> FinetuneDefaults:
    """Fine-tune settings for ``model``, by size and architecture, as measured after
    structured 50 % pruning on the built-in digits CNN and the zoo's ResNet-, MobileNetV3- and
    ViT-style nets (``benchmarks/real_models.py``; README "Real architectures").

    Small plain and depthwise CNNs: Adam at 0.005 for 5 epochs (lower rates recovered less:
    ResNet-like −3.3 pt at 0.002, MobileNetV3-like −2.5 pt at 0.002 vs +1.1 pt at 0.005).
    Attention: 0.005 wrecked a pruned ViT (−9.2 pt); 0.002 for 10 epochs recovered it
    (+2.5 pt; 5 epochs were not enough: −3.6 pt). Above 1 M parameters the rate is halved:
    a precaution for larger nets that no measurement here has checked yet.
    """
    traits = model_traits(model)
    large = traits["params"] > LARGE_PARAMS
    if traits["attention"]:
        return FinetuneDefaults(10, 0.001 if large else 0.002, "adam", 0.0, 0.0,
                                "attention layers: lower lr, 10 epochs")
    what = "depthwise CNN" if traits["depthwise"] else "plain network"
    if large:
        return FinetuneDefaults(5, 0.0025, "adam", 0.0, 0.0,
                                f"{what}, {traits['params']:,} parameters (> 1 M): lr halved")
    return FinetuneDefaults(5, 0.005, "adam", 0.0, 0.0,
                            f"small {what} ({traits['params']:,} parameters)")


@dataclass(frozen=True)
class FinetuneResult:
    """Which state was kept (``chosen_epoch`` 0 = no fine-tune helped) and why."""

    chosen_epoch: int
    val_accuracy_start: float
    val_accuracy_best: float
    bn_layers_recalibrated: int
    selection_split: str
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _selection(data: Any) -> tuple[str, Callable[[Any], float]]:
    split = "val" if len(data.y_val) else "train"
    return split, lambda model: float(evaluate(model, data, split).accuracy)


class _Best:
    """The best-scoring state seen so far (a deep copy of the state dict)."""

    def __init__(self, model: Any, score: float, epoch: int) -> None:
        self.score, self.epoch, self.state = score, epoch, copy.deepcopy(model.state_dict())

    def offer(self, model: Any, score: float, epoch: int) -> None:
        if score > self.score:
            self.score, self.epoch = score, epoch
            self.state = copy.deepcopy(model.state_dict())


def finetune(
    model: Any,
    data: Any,
    config: TrainConfig | None,
    *,
    teacher: Any = None,
    distill_alpha: float = 0.0,
    temperature: float = 4.0,
    after_step: Callable[[Any], None] | None = None,
    callbacks: Callbacks | None = None,
    bn_rows: int = BN_ROWS,
) -> FinetuneResult:
    """Fine-tune ``model`` in place and leave it in its best validated state.

    Candidates: the model as given, the same with BatchNorm statistics re-estimated, and each
    fine-tuned epoch (statistics re-estimated first). ``config=None`` only recalibrates.
    With a ``teacher`` and ``distill_alpha > 0`` the loss adds the teacher's soft targets.
    """
    import torch

    if not 0 <= distill_alpha <= 1:
        raise InvalidParameterError("distill_alpha", "a float in [0, 1]", distill_alpha)
    if distill_alpha > 0 and teacher is None:
        raise InvalidParameterError("teacher", "a model when distill_alpha > 0", None)
    split, score = _selection(data)
    X_train = data.X_train
    start = score(model)
    best = _Best(model, start, 0)
    n_bn = recalibrate_batchnorm(model, X_train, rows=bn_rows)
    if n_bn:
        best.offer(model, score(model), 0)
    history: list[dict[str, float]] = []

    def after_epoch(net: Any) -> None:
        recalibrate_batchnorm(net, X_train, rows=bn_rows)
        epoch = len(history) + 1
        acc = score(net)
        history.append({"epoch": epoch, "val_accuracy": acc})
        best.offer(net, acc, epoch)

    loss_fn = None
    if teacher is not None and distill_alpha > 0:
        teacher.eval()

        def loss_fn(net: Any, xb: Any, yb: Any) -> Any:
            with torch.no_grad():
                t_logits = teacher(xb)
            return distillation_loss(net(xb), t_logits, yb, alpha=distill_alpha,
                                     temperature=temperature)

    if config is not None and config.epochs > 0:
        train(model, data, config, callbacks=callbacks, loss_fn=loss_fn,
              after_step=after_step, after_epoch=after_epoch)
    model.load_state_dict(best.state)
    model.eval()
    return FinetuneResult(best.epoch, start, best.score, n_bn, split, history)
