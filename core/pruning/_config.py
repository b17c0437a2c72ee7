"""The pruning config: one frozen dataclass shared by every registered pruning method."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Config
from core.errors import InvalidParameterError, check_range
from core.training._train import OPTIMIZERS

SCHEDULES = ("oneshot", "gradual")
ATTENTION_MODES = ("heads", "head-dims")
STRUCTURED = ("structured-l1", "structured-l2", "structured-taylor")
UNSTRUCTURED = ("l1-unstructured", "global-magnitude", "random-unstructured",
                "taylor-unstructured", "movement")
SPARSITY_LOW, SPARSITY_HIGH = 0.05, 0.95


@dataclass(frozen=True)
class PruningConfig(Config):
    """What to prune and how.

    ``sparsity`` is the fraction removed: channels/neurons/heads of each prunable layer for
    the structured methods, weights for the unstructured ones. ``gradual`` reaches it over
    ``steps`` steps on a cubic schedule, fine-tuning ``finetune_epochs`` after each step.
    Every fine-tune first re-estimates BatchNorm statistics and keeps its best validated
    epoch (0 = the pruned model before fine-tuning). ``distill_alpha > 0`` adds the unpruned
    model's soft targets (temperature ``distill_temperature``) to the fine-tune loss.
    """

    method: str = "structured-l2"
    sparsity: float = 0.5
    schedule: str = "oneshot"
    steps: int = 1
    finetune_epochs: int = 5
    lr: float = 0.005
    batch_size: int = 64
    optimizer: str = "adam"
    weight_decay: float = 0.0
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0
    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    attention: str = "heads"
    score_batches: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in STRUCTURED + UNSTRUCTURED:
            raise InvalidParameterError("method", f"one of {list(STRUCTURED + UNSTRUCTURED)}",
                                        self.method)
        if not (isinstance(self.sparsity, (int, float)) and not isinstance(self.sparsity, bool)
                and 0 < self.sparsity < 1):
            raise InvalidParameterError(
                "sparsity", f"a float in (0, 1) (allowed {SPARSITY_LOW}–{SPARSITY_HIGH})",
                self.sparsity)
        check_range("sparsity", self.sparsity, low=SPARSITY_LOW, high=SPARSITY_HIGH)
        if self.schedule not in SCHEDULES:
            raise InvalidParameterError("schedule", f"one of {list(SCHEDULES)}", self.schedule)
        check_range("steps", self.steps, low=1, high=50, kind=int)
        if self.schedule == "gradual" and self.steps < 2:
            raise InvalidParameterError("steps", "≥ 2 for the gradual schedule", self.steps)
        check_range("finetune_epochs", self.finetune_epochs, low=0, high=1000, kind=int)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError("optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        check_range("weight_decay", self.weight_decay, low=0, high=1)
        check_range("distill_alpha", self.distill_alpha, low=0, high=1)
        check_range("distill_temperature", self.distill_temperature, low=0, high=100,
                    low_inclusive=False)
        if self.round_to is not None:
            check_range("round_to", self.round_to, low=1, high=1024, kind=int)
        if isinstance(self.ignore, str) or not all(isinstance(n, str) for n in self.ignore):
            raise InvalidParameterError("ignore", "a list of layer names", self.ignore)
        if self.attention not in ATTENTION_MODES:
            raise InvalidParameterError("attention", f"one of {list(ATTENTION_MODES)}",
                                        self.attention)
        check_range("score_batches", self.score_batches, low=1, high=10_000, kind=int)
        check_range("seed", self.seed, low=0, kind=int)
        if self.method == "movement" and self.finetune_epochs < 1:
            raise InvalidParameterError(
                "finetune_epochs", "≥ 1 for movement pruning (its scores are gathered while "
                "fine-tuning)", self.finetune_epochs)

    @property
    def structured(self) -> bool:
        return self.method in STRUCTURED

    def targets(self) -> list[float]:
        """The sparsity reached after each step (cubic schedule for ``gradual``)."""
        if self.schedule == "oneshot":
            return [float(self.sparsity)]
        return cubic_schedule(self.sparsity, self.steps)[1:]


def cubic_schedule(target: float, steps: int) -> list[float]:
    """Zhu & Gupta's cubic schedule: ``s_i = target · (1 − (1 − i/steps)³)``, i = 0..steps.

    Also a Torch-Pruning ``iterative_pruning_ratio_scheduler`` (same signature)."""
    return [float(target) * (1.0 - (1.0 - i / steps) ** 3) for i in range(steps + 1)]
