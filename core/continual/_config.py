"""The continual-learning config: one frozen dataclass, validated on creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig
from core.training._train import OPTIMIZERS

Sequence = Literal["split-digits", "permuted-digits", "label-columns", "files"]
Family = Literal["mlp", "cnn", "vit"]
# Pruners that can grow their sparsity step by step on one model across tasks.
PruneMethod = Literal["structured-l1", "structured-l2", "l1-unstructured", "global-magnitude"]
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]  (a tuple of names)
SEQUENCES, FAMILIES, PRUNE_METHODS = (get_args(t) for t in (Sequence, Family, PruneMethod))
Names = tuple[str, ...] | str  # a list, or one comma-separated string


@dataclass(frozen=True)
class ContinualConfig(MethodConfig):
    """A task sequence and how to learn it.

    ``sequence``: ``split-digits`` (class-incremental: digits split into ``n_tasks`` groups of
    classes), ``permuted-digits`` (domain-incremental: every task all classes, pixels permuted
    by a fixed per-task permutation; task 1 unpermuted), ``label-columns`` (one ``data`` .csv,
    each of ``label_columns`` a task) or ``files`` (each of ``files`` a task).
    ``replay_size`` rows are kept in an experience-replay buffer (reservoir sampling; 0 = no
    replay). After each task the model is optionally pruned (``prune`` method, sparsity
    growing on a cubic schedule to ``sparsity`` at the last task, ``finetune_epochs`` on the
    task and the buffer) and/or a copy quantized (``quantize``, a quantization method).
    """

    method: Literal["experience-replay"] = "experience-replay"
    # Constraints declared for the published JSON schema; __post_init__ enforces them.
    sequence: Sequence = "split-digits"
    n_tasks: Annotated[int, Field(ge=2)] = 5  # at most 10 for the digits sequences, else 100
    data: str | None = None
    label_columns: Names = ()
    files: Names = ()
    label_column: str = "label"
    normalize: bool = False
    model: Family = "cnn"
    replay_size: Annotated[int, Field(ge=0, le=1_000_000)] = 200
    epochs: Annotated[int, Field(ge=1, le=1000)] = 5
    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    optimizer: Optimizer = "adam"
    prune: PruneMethod | None = None
    sparsity: Annotated[float, Field(ge=0.05, le=0.95)] = 0.5
    finetune_epochs: Annotated[int, Field(ge=0, le=1000)] = 1
    quantize: str | None = None  # a registered quantization method
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    def __post_init__(self) -> None:
        from core.registry import list_methods

        for name in ("label_columns", "files"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, tuple(v.strip() for v in value.split(",")
                                                     if v.strip()))
            elif isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if self.method != "experience-replay":  # the one method: no import-order dependence
            raise InvalidParameterError("method", "'experience-replay'", self.method)
        self._check_sequence()
        if not isinstance(self.normalize, bool):
            raise InvalidParameterError("normalize", "true or false", self.normalize)
        if self.model not in FAMILIES:
            raise InvalidParameterError("model", f"one of {list(FAMILIES)}", self.model)
        check_range("replay_size", self.replay_size, low=0, high=1_000_000, kind=int)
        check_range("epochs", self.epochs, low=1, high=1000, kind=int)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError("optimizer", f"one of {list(OPTIMIZERS)}", self.optimizer)
        if self.prune is not None and self.prune not in PRUNE_METHODS:
            raise InvalidParameterError("prune", f"one of {list(PRUNE_METHODS)} or None",
                                        self.prune)
        check_range("sparsity", self.sparsity, low=0.05, high=0.95)
        check_range("finetune_epochs", self.finetune_epochs, low=0, high=1000, kind=int)
        if self.quantize is not None:
            q = list_methods("quantization")
            if self.quantize not in q:
                raise InvalidParameterError("quantize", f"one of {q} or None", self.quantize)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)

    def _check_sequence(self) -> None:
        if self.sequence not in SEQUENCES:
            raise InvalidParameterError("sequence", f"one of {list(SEQUENCES)}", self.sequence)
        check_range("n_tasks", self.n_tasks, low=2, high=10 if "digits" in self.sequence
                    else 100, kind=int)
        if self.sequence == "label-columns":
            if not self.data:
                raise InvalidParameterError("data", "a .csv file for the 'label-columns' "
                                            "sequence", self.data)
            if len(self.label_columns) < 2:
                raise InvalidParameterError("label_columns", "at least 2 column names (one "
                                            "task each)", list(self.label_columns))
        if self.sequence == "files" and len(self.files) < 2:
            raise InvalidParameterError("files", "at least 2 .csv/.npz files (one task each)",
                                        list(self.files))

    @property
    def task_count(self) -> int:
        """How many tasks the sequence has."""
        if self.sequence == "label-columns":
            return len(self.label_columns)
        if self.sequence == "files":
            return len(self.files)
        return self.n_tasks

