"""The pruning config: one frozen dataclass shared by every registered pruning method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig
from core.training._train import OPTIMIZERS

# Constraints are declared on the fields (the published JSON schema, core.registry.
# config_schema) and enforced in __post_init__ with the studio's messages.
Schedule = Literal["oneshot", "gradual", "linear"]
AttentionMode = Literal["heads", "head-dims"]
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]  (a tuple of names)
SCHEDULES, ATTENTION_MODES = get_args(Schedule), get_args(AttentionMode)
Epochs = Annotated[int, Field(ge=0, le=1000)]
Fraction = Annotated[float, Field(ge=0, le=1)]
SPARSITY_LOW, SPARSITY_HIGH = 0.05, 0.95
AUTO_OPTIONS = ("finetune_epochs", "lr", "optimizer", "weight_decay", "distill_alpha")


@dataclass(frozen=True)
class PruningConfig(MethodConfig):
    """What to prune and how.

    ``sparsity`` is the fraction removed: channels/neurons/heads of each prunable layer for
    the structured methods, weights for the unstructured ones. ``gradual`` reaches it over
    ``steps`` steps on a cubic schedule, fine-tuning ``finetune_epochs`` after each step.
    Every fine-tune first re-estimates BatchNorm statistics and keeps its best validated
    epoch (0 = the pruned model before fine-tuning). ``distill_alpha > 0`` adds the unpruned
    model's soft targets (temperature ``distill_temperature``) to the fine-tune loss.
    ``finetune_epochs``, ``lr``, ``optimizer``, ``weight_decay`` and ``distill_alpha`` left at
    None are chosen per
    model (``core.training.finetune_defaults``: size, attention, depthwise convolutions) and
    recorded in the report. ``schedule="linear"`` ramps the sparsity linearly: 0 up to
    ``start_epoch``, ``sparsity`` from ``end_epoch`` on, a pruning step every ``frequency``
    epochs in between (each followed by ``finetune_epochs`` of fine-tuning).
    """

    method: str = "structured-l2"
    sparsity: Annotated[float, Field(ge=0.05, le=0.95)] = 0.5
    schedule: Schedule = "oneshot"
    steps: Annotated[int, Field(ge=1, le=50)] = 1
    finetune_epochs: Epochs | None = None
    lr: Annotated[float, Field(gt=0, le=10)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    optimizer: Optimizer | None = None
    weight_decay: Fraction | None = None
    distill_alpha: Fraction | None = None
    distill_temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    round_to: Annotated[int, Field(ge=1, le=1024)] | None = None
    ignore: tuple[str, ...] = ()
    attention: AttentionMode = "heads"
    start_epoch: Epochs = 0
    end_epoch: Annotated[int, Field(ge=1, le=1000)] = 3
    frequency: Annotated[int, Field(ge=1, le=1000)] = 1
    score_batches: Annotated[int, Field(ge=1, le=10_000)] = 4
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    def __post_init__(self) -> None:
        criterion = self.criterion  # an unknown name: the "one of [...]" error
        if not (isinstance(self.sparsity, (int, float)) and not isinstance(self.sparsity, bool)
                and 0 < self.sparsity < 1):
            raise InvalidParameterError(
                "sparsity", f"a float in (0, 1) (allowed {SPARSITY_LOW}–{SPARSITY_HIGH})",
                self.sparsity)
        check_range("sparsity", self.sparsity, low=SPARSITY_LOW, high=SPARSITY_HIGH)
        self._check_schedule()
        self._check_finetune()
        if self.round_to is not None:
            check_range("round_to", self.round_to, low=1, high=1024, kind=int)
        if isinstance(self.ignore, str) or not all(isinstance(n, str) for n in self.ignore):
            raise InvalidParameterError("ignore", "a list of layer names", self.ignore)
        if self.attention not in ATTENTION_MODES:
            raise InvalidParameterError("attention", f"one of {list(ATTENTION_MODES)}",
                                        self.attention)
        check_range("score_batches", self.score_batches, low=1, high=10_000, kind=int)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        criterion.check(self)

    def _check_schedule(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InvalidParameterError("schedule", f"one of {list(SCHEDULES)}", self.schedule)
        check_range("steps", self.steps, low=1, high=50, kind=int)
        if self.schedule == "gradual" and self.steps < 2:
            raise InvalidParameterError("steps", "≥ 2 for the gradual schedule", self.steps)
        check_range("start_epoch", self.start_epoch, low=0, high=1000, kind=int)
        check_range("end_epoch", self.end_epoch, low=1, high=1000, kind=int)
        if self.schedule == "linear" and self.end_epoch <= self.start_epoch:
            raise InvalidParameterError("end_epoch", f"greater than start_epoch "
                                        f"({self.start_epoch}) for the linear schedule",
                                        self.end_epoch)
        check_range("frequency", self.frequency, low=1, high=1000, kind=int)

    def _check_finetune(self) -> None:
        if self.finetune_epochs is not None:
            check_range("finetune_epochs", self.finetune_epochs, low=0, high=1000, kind=int)
        if self.lr is not None:
            check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError("optimizer", f"one of {list(OPTIMIZERS)} (or None: "
                                        "chosen per model)", self.optimizer)
        if self.weight_decay is not None:
            check_range("weight_decay", self.weight_decay, low=0, high=1)
        if self.distill_alpha is not None:
            check_range("distill_alpha", self.distill_alpha, low=0, high=1)
        check_range("distill_temperature", self.distill_temperature, low=0, high=100,
                    low_inclusive=False)

    @property
    def criterion(self) -> Any:
        """The method's criterion (``core.pruning._criteria``): what it ranks by."""
        from core.pruning._criteria import criterion_for

        return criterion_for(self.method)

    @property
    def structured(self) -> bool:
        return self.criterion.structured

    def for_model(self, model: Any) -> tuple["PruningConfig", dict[str, Any]]:
        """This config with its None fine-tune options filled for ``model``, and a record of
        what was chosen (``chosen_for_model``) or given."""
        from core.training import finetune_defaults

        defaults = finetune_defaults(model)
        chosen = {k: getattr(defaults, "epochs" if k == "finetune_epochs" else k)
                  for k in AUTO_OPTIONS if getattr(self, k) is None}
        record = {"given": {k: getattr(self, k) for k in AUTO_OPTIONS if k not in chosen},
                  "chosen_for_model": chosen, "reason": defaults.reason}
        return self.replace(**chosen), record

    def targets(self) -> list[float]:
        """The sparsity reached after each step (cubic for ``gradual``, linear by epoch for
        ``linear``)."""
        if self.schedule == "oneshot":
            return [float(self.sparsity)]
        if self.schedule == "linear":
            return [linear_schedule(self.sparsity, self.start_epoch, self.end_epoch, e)
                    for e in self.pruning_epochs()]
        return cubic_schedule(self.sparsity, self.steps)[1:]

    def pruning_epochs(self) -> list[int]:
        """The epochs at which the linear schedule prunes (every ``frequency``, last at
        ``end_epoch``)."""
        epochs = list(range(self.start_epoch + self.frequency, self.end_epoch, self.frequency))
        return [*epochs, self.end_epoch]


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Zhu & Gupta's cubic schedule: ``s_i = target · (1 − (1 − i/steps)³)``, i = 0..steps.

    Also a Torch-Pruning ``iterative_pruning_ratio_scheduler`` (same signature)."""
    return [float(target) * (1.0 - (1.0 - i / steps) ** 3) for i in range(steps + 1)]


def linear_schedule(target: float, start_epoch: int, end_epoch: int, epoch: int) -> float:
    """Sparsity at ``epoch`` of a linear ramp: 0 until ``start_epoch``, ``target`` from
    ``end_epoch`` on, ``target · (epoch − start) / (end − start)`` in between."""
    if epoch <= start_epoch:
        return 0.0
    if epoch >= end_epoch:
        return float(target)
    return float(target) * (epoch - start_epoch) / (end_epoch - start_epoch)
