"""Pruning: structured (channels/neurons/heads really removed) and unstructured (sparse weights).

Every method is a criterion class (``_criteria.py``: Torch-Pruning importance objects for the
structured ones) registered in the ``pruning`` area; ``prune`` is the verb, ``prune_model`` the
seed-document facade.
"""

from core.pruning._config import ATTENTION_MODES, SCHEDULES, PruningConfig, cubic_schedule
from core.pruning._criteria import (  # importing registers every criterion as a method
    Criterion,
    StructuredCriterion,
    UnstructuredCriterion,
    criterion,
    criterion_for,
    method_names,
)
from core.pruning._engine import layer_table, run_schedule
from core.pruning._seed import prune_model  # the seeds' forms too
from core.pruning._verb import prune, unsupported_methods

STRUCTURED = tuple(method_names(structured=True))
UNSTRUCTURED = tuple(method_names(structured=False))

__all__ = [
    "ATTENTION_MODES",
    "Criterion",
    "SCHEDULES",
    "STRUCTURED",
    "StructuredCriterion",
    "UNSTRUCTURED",
    "UnstructuredCriterion",
    "PruningConfig",
    "criterion",
    "criterion_for",
    "cubic_schedule",
    "layer_table",
    "method_names",
    "prune",
    "prune_model",
    "run_schedule",
    "unsupported_methods",
]
