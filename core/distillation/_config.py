"""The distillation config: one frozen dataclass for every method, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig

# The registered methods (core.distillation._methods registers one class per name): a
# constant, so that validating a config does not depend on which modules were imported.
Method = Literal["soft-target", "feature", "attention", "relational", "self", "multi-teacher"]
Family = Literal["mlp", "cnn", "vit"]
Budget = Literal["steps", "epochs"]
METHODS, FAMILIES, BUDGETS = (get_args(t) for t in (Method, Family, Budget))
Unit = Annotated[float, Field(gt=0, le=1)]


@dataclass(frozen=True)
class DistillConfig(MethodConfig):
    """How to distil: method, temperature, alpha, student size, transfer set, training budget.

    ``alpha`` weights the teacher term: labelled rows get ``(1-alpha)*CE + alpha*T^2*KL``,
    unlabelled rows only ``alpha*T^2*KL``. ``budget`` sets the label-only student's training:
    ``"steps"`` (default) gives it as many optimiser steps as the distilled student (more
    epochs over its smaller labelled set), ``"epochs"`` the same number of epochs.
    ``beta`` weights the method's extra term (hint, attention or relational loss); ``None``
    takes the method's default.
    """

    method: Method = "soft-target"
    temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.7
    beta: Annotated[float, Field(ge=0, le=1e6)] | None = None
    width: Unit = 0.5
    depth: Unit = 1.0
    family: Family | None = None
    student: str | None = None
    teachers: tuple[str, ...] = ()
    layer: str | None = None
    label_fraction: Unit = 1.0
    unlabelled: str | None = None
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    budget: Budget = "steps"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    batch_size: Annotated[int, Field(ge=2, le=65_536)] = 64
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidParameterError("method", f"one of {list(METHODS)}", self.method)
        check_range("temperature", self.temperature, low=0, high=100, low_inclusive=False)
        check_range("alpha", self.alpha, low=0, high=1)
        if self.beta is not None:
            check_range("beta", self.beta, low=0, high=1e6)
        check_range("width", self.width, low=0, high=1, low_inclusive=False)
        check_range("depth", self.depth, low=0, high=1, low_inclusive=False)
        if self.family is not None and self.family not in FAMILIES:
            raise InvalidParameterError("family", f"one of {list(FAMILIES)}", self.family)
        check_range("label_fraction", self.label_fraction, low=0, high=1, low_inclusive=False)
        check_range("epochs", self.epochs, low=1, high=10_000, kind=int)
        if self.budget not in BUDGETS:
            raise InvalidParameterError("budget", f"one of {list(BUDGETS)}", self.budget)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=2, high=65_536, kind=int)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        if isinstance(self.teachers, (str, list)):
            object.__setattr__(self, "teachers", _as_tuple(self.teachers))

    def train_config(self, epochs: int | None = None):
        """The TrainConfig the students are trained with (same seed, lr, batch size)."""
        from core.training import TrainConfig

        return TrainConfig(epochs=epochs or self.epochs, lr=self.lr,
                           batch_size=self.batch_size, seed=self.seed)


def _as_tuple(value: str | list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)
