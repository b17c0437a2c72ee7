"""Optimization Studio engine: no UI imports, and importing it has no side effects.

The verbs (``train``, ``measure``, ``quantize``, ``prune``, ``distill``, ``tune``…) are
loaded lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "quantize": "core.quantization",
    "quantize_model": "core.quantization",
    "train": "core.training",
    "TrainConfig": "core.training",
    "evaluate": "core.measure",
    "measure": "core.measure",
    "measure_many": "core.measure",
    "load_dataset": "core.data",
    "build_model": "core.models",
    "load_model": "core.artifacts",
    "trusted_model_code": "core.artifacts",
    "save_model": "core.artifacts",
    "train_baseline": "core.runs",
    "open_variant": "core.runs",
    "open_input": "core.inputs",
    "ModelInput": "core.inputs",
    "StudioError": "core.errors",
    "scale": "core.federated",
    "ScaleConfig": "core.federated",
    "ScalabilityTester": "core.federated",
    "generate_synthetic_clients": "core.federated",
    "ModelCompressor": "core.compressor",
    "tune": "core.tuning",
    "TuneConfig": "core.tuning",
    "HyperparameterTuner": "core.tuning",
    "distill": "core.distillation",
    "DistillConfig": "core.distillation",
    "compare": "core.compare",
    "auto": "core.auto",
    "AutoConfig": "core.auto",
    "AutoOptimizer": "core.auto",
    "Recipe": "core.recipes",
    "run_recipe": "core.recipes",
    "prune": "core.pruning",
    "prune_model": "core.pruning",
    "PruningConfig": "core.pruning",
    "profile": "core.profiling",
    "Profiler": "core.profiling",
    "fuse": "core.fusion",
    "FusionConfig": "core.fusion",
    "OperatorFuser": "core.fusion",
    "factorize": "core.lowrank",
    "LowRankConfig": "core.lowrank",
    "LowRankFactorizer": "core.lowrank",
    "Quantizer": "core.model_optimization",
    "QATTrainer": "core.model_optimization",
    "Pruner": "core.model_optimization",
    "KnowledgeDistiller": "core.model_optimization",
    "NASOptimizer": "core.model_optimization",
    "MixedPrecisionOptimizer": "core.model_optimization",
    "benchmark_models": "core.benchmarking",
    "plot_optimization_comparison": "core.benchmarking",
    "create_efficiency_report": "core.benchmarking",
    "DEFAULT_PARAM_SPACE": "core.hyperparameter_tuning",
    "continual": "core.continual",
    "ContinualConfig": "core.continual",
    "HardwareOptimizedTrainer": "core.continual",
    "plot_efficiency_over_tasks": "core.continual",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        # A subpackage named like its verb (auto, compare, measure) is now set on this
        # package by the import and is callable (core._callable): return that same object.
        return globals().get(name, value)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
