"""Tuning and architecture search on Optuna: persistent studies, early stopping, Pareto search.

``tune(None, None, TuneConfig(...), out_dir=...)`` runs or resumes a study; the samplers
(grid, random, tpe, gp, cmaes, nsga2) are this area's registered methods.
"""

from core.tuning._best import pick_trial, train_best
from core.tuning._config import (
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    TARGETS,
    TuneConfig,
    arch_kwargs,
    default_space,
)
from core.tuning._engine import (
    StudyFailedError,
    export_trials_csv,
    load_study_summary,
    open_study,
    pareto_rows,
    study_yaml,
    summarize,
    tune,
)
from core.tuning._facade import HyperparameterTuner, TuningResult
from core.tuning._objective import MultiObjectiveMedianRule, measure_latency_ms
from core.tuning._search import make_pruner, make_sampler
from core.tuning._space import (
    DEFAULT_ARCH_SPACE,
    DEFAULT_PARAM_SPACE,
    FEDERATED_PARAM_SPACE,
    Dimension,
    SearchSpace,
    parse_space,
)
from core.tuning._storage import StorageError, default_storage, mask_url, open_storage

__all__ = [
    "DEFAULT_ARCH_SPACE",
    "DEFAULT_PARAM_SPACE",
    "FEDERATED_PARAM_SPACE",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "TARGETS",
    "Dimension",
    "HyperparameterTuner",
    "MultiObjectiveMedianRule",
    "SearchSpace",
    "StorageError",
    "StudyFailedError",
    "TuneConfig",
    "TuningResult",
    "arch_kwargs",
    "default_space",
    "default_storage",
    "export_trials_csv",
    "load_study_summary",
    "make_pruner",
    "make_sampler",
    "mask_url",
    "measure_latency_ms",
    "open_storage",
    "open_study",
    "pareto_rows",
    "parse_space",
    "pick_trial",
    "study_yaml",
    "summarize",
    "train_best",
    "tune",
]
