"""The seeds' ``hyperparameter_tuning`` module: ``HyperparameterTuner`` and their
``DEFAULT_PARAM_SPACE`` (inner_lr, outer_lr, inner_steps, num_rounds, batch_size,
hidden_dims, dropout: the federated meta-learning dimensions; the studio's own default
space for its trainer is ``core.tuning.DEFAULT_PARAM_SPACE``)."""

from __future__ import annotations

from core.tuning._facade import HyperparameterTuner, TuningResult
from core.tuning._space import FEDERATED_PARAM_SPACE

DEFAULT_PARAM_SPACE = FEDERATED_PARAM_SPACE

__all__ = ["DEFAULT_PARAM_SPACE", "HyperparameterTuner", "TuningResult"]
