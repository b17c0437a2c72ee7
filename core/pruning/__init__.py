"""Pruning: structured (channels/neurons/heads really removed) and unstructured (sparse weights).

Every method registers in the ``pruning`` area; ``prune`` is the verb, ``prune_model`` the
seed-document facade.
"""

from core.pruning import _engine  # noqa: F401  (registers the methods)
from core.pruning._config import (
    ATTENTION_MODES,
    SCHEDULES,
    STRUCTURED,
    UNSTRUCTURED,
    PruningConfig,
    cubic_schedule,
)
from core.pruning._engine import layer_table, run_schedule
from core.pruning._seed import prune_model  # the seeds' forms too
from core.pruning._verb import prune, unsupported_methods

__all__ = [
    "ATTENTION_MODES",
    "SCHEDULES",
    "STRUCTURED",
    "UNSTRUCTURED",
    "PruningConfig",
    "cubic_schedule",
    "layer_table",
    "prune",
    "prune_model",
    "run_schedule",
    "unsupported_methods",
]
