"""Pruning: structured (channels/neurons/heads really removed) and unstructured (sparse weights).

Every method is a criterion class (``_criteria.py``: Torch-Pruning importance objects for the
structured ones) registered in the ``pruning`` area; ``prune`` is the verb, ``prune_model`` the
seed-document facade.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.pruning._config import ATTENTION_MODES, SCHEDULES, PruningConfig, cubic_schedule
from core.pruning._criteria import (  # importing registers every criterion as a method
    Criterion,
    StructuredCriterion,
    UnstructuredCriterion,
    criterion,
    criterion_for,
    method_names,
)
from core.pruning._seed import prune_model  # the seeds' forms too

STRUCTURED = tuple(method_names(structured=True))
UNSTRUCTURED = tuple(method_names(structured=False))

# The engine and the verb's module import torch: loaded on first use, so that the studio's
# server lists the methods and builds configs without torch (its jobs run in child processes).
_LAZY = {"layer_table": "core.pruning._engine", "run_schedule": "core.pruning._engine",
         "unsupported_methods": "core.pruning._verb"}


def prune(*args: Any, **kwargs: Any) -> Any:
    """Prune a model and write a measured run folder (``core.pruning._verb.prune``; torch is
    imported when it is called, in the job's own process on a server)."""
    from core.pruning._verb import prune as run

    return run(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.pruning' has no attribute {name!r}")

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
