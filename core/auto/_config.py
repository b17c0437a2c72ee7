"""The auto-optimizer's config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig

Target = Literal["speed", "size", "accuracy", "balanced"]
TARGETS = get_args(Target)


@dataclass(frozen=True)
class AutoConfig(MethodConfig):
    """What to optimise for and how much accuracy may be given up.

    ``tolerance`` is the largest validation-accuracy drop (absolute, e.g. 0.01 = 1 point)
    a candidate may have to be chosen. ``finetune_epochs`` is the fine-tuning budget after
    structured pruning (and the distillation epochs); None: the model's own fine-tune
    defaults (``core.training.finetune_defaults``: a ViT gets its own). ``train_epochs``
    trains the baseline when the model is a family name. ``candidates`` restricts the
    proposals by name; ``refine`` rounds of sparsity search bisect between the strongest
    structured pruning within the tolerance and the mildest one beyond it.
    """

    method: ClassVar[str] = "auto"  # to_dict() names it; auto is no registered method

    # the constraints __post_init__ checks, declared so the JSON schema publishes them
    target: Target = "balanced"
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    finetune_epochs: Annotated[int, Field(ge=1, le=1000)] | None = None
    train_epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    candidates: tuple[str, ...] = ()
    refine: Annotated[int, Field(ge=0, le=5)] = 2
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise InvalidParameterError("target", f"one of {list(TARGETS)}", self.target)
        check_range("tolerance", self.tolerance, low=0, high=1)
        if self.finetune_epochs is not None:
            check_range("finetune_epochs", self.finetune_epochs, low=1, high=1000, kind=int)
        check_range("train_epochs", self.train_epochs, low=1, high=10_000, kind=int)
        check_range("refine", self.refine, low=0, high=5, kind=int)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        if isinstance(self.candidates, str) or not all(
                isinstance(c, str) for c in self.candidates):
            raise InvalidParameterError("candidates", "a list of candidate names",
                                        self.candidates)
        from core.auto._candidates import CANDIDATE_NAMES

        bad = [c for c in self.candidates if c not in CANDIDATE_NAMES]
        if bad:
            raise InvalidParameterError("candidates", f"names from {list(CANDIDATE_NAMES)}",
                                        bad[0])
