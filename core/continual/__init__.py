"""Continual learning: a task sequence learned in order with experience replay, optionally
pruned and/or quantized after each task, with the accuracy matrix, forgetting, backward
transfer and each task's artifact size and latency measured.

``continual`` is the verb; ``HardwareOptimizedTrainer`` the seed-document facade.
"""

from core.continual._chart import plot_efficiency_over_tasks
from core.continual._config import PRUNE_METHODS, SEQUENCES, ContinualConfig
from core.continual._engine import ContinualTrainer, ReplayBuffer
from core.continual._metrics import average_accuracy, backward_transfer, forgetting, summarize
from core.continual._seed import HardwareOptimizedTrainer
from core.continual._tasks import (
    TaskSequence,
    build_tasks,
    merge_tasks,
    permuted_digits,
    split_digits,
    tasks_from_files,
    tasks_from_label_columns,
)
from core.continual._verb import continual

__all__ = [
    "PRUNE_METHODS",
    "SEQUENCES",
    "ContinualConfig",
    "ContinualTrainer",
    "HardwareOptimizedTrainer",
    "ReplayBuffer",
    "TaskSequence",
    "average_accuracy",
    "backward_transfer",
    "build_tasks",
    "continual",
    "forgetting",
    "merge_tasks",
    "permuted_digits",
    "plot_efficiency_over_tasks",
    "split_digits",
    "summarize",
    "tasks_from_files",
    "tasks_from_label_columns",
]

from core._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, continual)  # ``from core import continual`` is callable
