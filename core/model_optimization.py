"""The seeds' edge-optimization classes as thin facades: each forwards to one studio verb.

``Quantizer`` → ``quantize``; ``QATTrainer`` → ``quantize`` (torch-qat-int8);
``Pruner`` → ``prune``; ``KnowledgeDistiller`` → ``distill``; ``NASOptimizer`` →
``tune`` (architecture); ``MixedPrecisionOptimizer`` → ``quantize`` (tolerance);
``OperatorFuser`` → ``fuse``; ``LowRankFactorizer`` → ``factorize``; ``Profiler`` →
``profile``. Their results are real run folders under ``workdir`` (``last`` holds the
RunResult); the methods return what the seeds use: models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.artifacts import new_run_id
from core.errors import InvalidParameterError
from core.fusion import OperatorFuser
from core.lowrank import LowRankFactorizer
from core.profiling import Profiler

__all__ = ["KnowledgeDistiller", "LowRankFactorizer", "MixedPrecisionOptimizer",
           "NASOptimizer", "OperatorFuser", "Profiler", "Pruner", "QATTrainer", "Quantizer"]

QUANTIZER_METHODS = {"int8": "ort-static-int8", "static": "ort-static-int8",
                     "dynamic": "ort-dynamic-int8", "fp16": "ort-fp16", "float16": "ort-fp16",
                     "int4": "ort-int4"}


class _Facade:
    workdir: Path = Path("results")
    measure_options: Mapping[str, Any] | None = None
    last: Any = None

    def _out(self, operation: str) -> Path:
        return Path(self.workdir) / new_run_id(operation)


def _data(model: Any, data: Any) -> Any:
    from core.seed_compat import resolve_data

    return resolve_data(model, data)


class Quantizer(_Facade):
    """``Quantizer(method="int8").quantize(model=..., calibration_data=..., algorithm=...)``;
    ``algorithm`` "minmax", "kl" (the studio's "entropy") or "percentile"."""

    def __init__(self, method: str = "int8", *, workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        if method not in QUANTIZER_METHODS:
            raise InvalidParameterError("method", f"one of {sorted(QUANTIZER_METHODS)}", method)
        self.method, self.workdir = QUANTIZER_METHODS[method], Path(workdir)
        self.measure_options = measure_options

    def quantize(self, model: Any, calibration_data: Any = None, algorithm: str | None = None,
                 **options: Any) -> Any:
        from core.quantization import quantize_model

        if algorithm is not None:
            options["algorithm"] = algorithm
        self.last = quantize_model(model, _data(model, calibration_data), self.method,
                                   out_dir=self._out("quantize"),
                                   measure_options=self.measure_options, **options)
        return self.last["quantized_model"]


class QATTrainer(_Facade):
    """``QATTrainer(model, target_precision="int8").train(train_data, epochs, learning_rate)``;
    the verb converts to INT8 itself, so ``convert_to_int8`` returns that converted model."""

    def __init__(self, model: Any, target_precision: str = "int8", *,
                 workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        if target_precision != "int8":
            raise InvalidParameterError("target_precision", "'int8'", target_precision)
        self.model, self.workdir, self.measure_options = model, Path(workdir), measure_options

    def train(self, train_data: Any = None, epochs: int = 10, learning_rate: float = 1e-4,
              **options: Any) -> Any:
        from core.quantization import quantize_model

        self.last = quantize_model(self.model, _data(self.model, train_data), "torch-qat-int8",
                                   out_dir=self._out("quantize"), epochs=epochs,
                                   lr=learning_rate, measure_options=self.measure_options,
                                   **options)
        return self.last["quantized_model"]

    def convert_to_int8(self, qat_model: Any = None) -> Any:
        if self.last is None:
            raise InvalidParameterError("train", "called before convert_to_int8()", None)
        return self.last["quantized_model"]


PRUNER_METHODS = {("structured", "l1_norm"): "structured-l1",
                  ("structured", "l2_norm"): "structured-l2",
                  ("structured", "importance"): "structured-taylor",
                  ("magnitude", None): "l1-unstructured",
                  ("importance", None): "taylor-unstructured",
                  ("iterative", None): "l1-unstructured"}


class Pruner(_Facade):
    """``Pruner(method="structured").prune(model, pruning_ratio=0.5, criterion="l1_norm")``;
    also "magnitude", "importance" (gradients on ``train_data``) and "iterative"
    (``prune_step``); ``fine_tune(model, train_data, epochs)``."""

    def __init__(self, method: str = "structured", *, workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        if method not in {m for m, _ in PRUNER_METHODS}:
            raise InvalidParameterError("method", "one of ['importance', 'iterative', "
                                        "'magnitude', 'structured']", method)
        self.method, self.workdir, self.measure_options = method, Path(workdir), measure_options
        self.data: Any = None

    def prune(self, model: Any, pruning_ratio: float = 0.5, criterion: str | None = None,
              train_data: Any = None, **config: Any) -> Any:
        crit = (criterion or "l2_norm") if self.method == "structured" else None
        key = (self.method, crit)
        if key not in PRUNER_METHODS:
            raise InvalidParameterError("criterion", "'l1_norm', 'l2_norm' or 'importance'",
                                        criterion)
        self.data = _data(model, train_data if train_data is not None else self.data)
        config.setdefault("finetune_epochs", 0)  # the seeds fine-tune with fine_tune()
        self._args = (model, PRUNER_METHODS[key], pruning_ratio, dict(config))
        return self._run()

    def _run(self) -> Any:
        from core.pruning import prune_model

        model, method, ratio, config = self._args
        self.last = prune_model(model, self.data, method, ratio, out_dir=self._out("prune"),
                                measure_options=self.measure_options, **config)
        self._returned = self.last["pruned_model"]
        return self._returned

    def prune_step(self, model: Any, ratio: float = 0.1, **config: Any) -> Any:
        return self.prune(model, ratio, **config)

    def fine_tune(self, model: Any, train_data: Any = None, epochs: int = 5,
                  **options: Any) -> Any:
        """Fine-tune: the model this pruner returned is pruned again by the verb with
        ``epochs`` of fine-tuning (a user model's pruned form is not trainable in torch);
        any other trainable module is fine-tuned in place."""
        from core.training import TrainConfig, finetune

        if train_data is not None:
            self.data = _data(model, train_data)
        if getattr(self, "_returned", None) is model:
            m, method, ratio, config = self._args
            self._args = (m, method, ratio, {**config, "finetune_epochs": epochs, **options})
            return self._run()
        data = self.data if self.data is not None else _data(model, None)
        if isinstance(data, (str, Path)):
            from core.data import load_dataset

            data = load_dataset(data)
        finetune(model, data, TrainConfig(epochs=epochs, **options))
        return model


class KnowledgeDistiller(_Facade):
    """``KnowledgeDistiller(teacher_model, student_model, temperature, alpha).train(
    train_data, epochs)``: returns the student, trained (in place) by the distill verb."""

    def __init__(self, teacher_model: Any, student_model: Any, temperature: float = 4.0,
                 alpha: float = 0.7, *, workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        self.teacher, self.student = teacher_model, student_model
        self.temperature, self.alpha = temperature, alpha
        self.workdir, self.measure_options = Path(workdir), measure_options

    def train(self, train_data: Any = None, epochs: int = 20, **config: Any) -> Any:
        from core.compressor import _load_trained
        from core.data import load_dataset
        from core.distillation import DistillConfig, distill

        data = _data(self.teacher, train_data)
        data = load_dataset(data) if isinstance(data, (str, Path)) else data
        cfg = DistillConfig.from_dict({"temperature": self.temperature, "alpha": self.alpha,
                                       "epochs": epochs, **config})
        self.last = distill(self.teacher, data, cfg, student=self.student,
                            out_dir=self._out("distill"), measure_options=self.measure_options)
        _load_trained(self.student, Path(self.last.run_dir), data)
        return self.student.eval()


NAS_FAMILIES = {"mobilenet_v3": "cnn", "mobilenet": "cnn", "cnn": "cnn", "mlp": "mlp",
                "vit": "vit"}


class NASOptimizer(_Facade):
    """``NASOptimizer(search_space="mobilenet_v3", constraints={"latency_ms": 20,
    "model_size_mb": 5, "min_accuracy": 0.9}).search(train_data, validation_data,
    search_iterations)``: the studio's architecture study (Optuna) over the built-in CNN
    (MobileNet-style search spaces map to it), latency and size as constraints."""

    def __init__(self, search_space: str = "cnn", constraints: Mapping[str, float] | None = None,
                 *, epochs: int = 3, workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        if search_space not in NAS_FAMILIES:
            raise InvalidParameterError("search_space", f"one of {sorted(NAS_FAMILIES)}",
                                        search_space)
        self.family, self.constraints = NAS_FAMILIES[search_space], dict(constraints or {})
        unknown = set(self.constraints) - {"latency_ms", "model_size_mb", "min_accuracy"}
        if unknown:
            raise InvalidParameterError("constraints", "keys among latency_ms, model_size_mb, "
                                        "min_accuracy", sorted(unknown))
        self.epochs, self.workdir, self.measure_options = epochs, Path(workdir), measure_options
        self.data: Any = None

    def search(self, train_data: Any = "digits", validation_data: Any = None,
               search_iterations: int = 20) -> dict[str, Any]:
        """Best architecture parameters; ``validation_data`` is the data set's own split."""
        from core.tuning import TuneConfig, tune

        self.data = train_data
        c = self.constraints
        size = c.get("model_size_mb")
        cfg = TuneConfig(target="architecture", model=self.family, n_trials=search_iterations,
                         epochs=self.epochs, max_latency_ms=c.get("latency_ms"),
                         max_size_bytes=int(size * 2**20) if size else None)
        self.last = tune(self.family, train_data, cfg, out_dir=self._out("tune"),
                         measure_options=self.measure_options)
        best = self.last.report["study"]["best"][0]
        acc = best["values"].get("accuracy") if isinstance(best["values"], dict) else None
        if c.get("min_accuracy") is not None and acc is not None and acc < c["min_accuracy"]:
            import warnings

            warnings.warn(f"The best architecture's accuracy {acc:.4f} is below min_accuracy "
                          f"{c['min_accuracy']}.", stacklevel=2)
        return dict(best["params"])

    def build_model(self, arch: Mapping[str, Any]) -> Any:
        from core.data import Dataset, load_dataset
        from core.models import model_for_data
        from core.tuning import arch_kwargs

        data = self.data if isinstance(self.data, Dataset) else load_dataset(self.data)
        return model_for_data(self.family, data.input_shape, data.num_classes,
                              **arch_kwargs(self.family, dict(arch)))

    def train(self, model: Any, train_data: Any = None, epochs: int = 10) -> Any:
        from core.data import Dataset, load_dataset
        from core.training import TrainConfig, train

        data = train_data if train_data is not None else self.data
        data = data if isinstance(data, Dataset) else load_dataset(data)
        train(model, data, TrainConfig(epochs=epochs))
        return model


class MixedPrecisionOptimizer(_Facade):
    """``MixedPrecisionOptimizer().optimize(model, sensitive_layers=[...],
    accuracy_threshold=0.99)``: INT8 where accuracy allows, float elsewhere — the quantize
    verb's tolerance search (drop ≤ 1 − accuracy_threshold) keeps the most sensitive layers
    in float; named ``sensitive_layers`` are passed as the method's ``exclude`` option."""

    def __init__(self, method: str = "ort-static-int8", *, workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        self.method, self.workdir, self.measure_options = method, Path(workdir), measure_options

    def optimize(self, model: Any, sensitive_layers: list[str] | None = None,
                 accuracy_threshold: float = 0.99, data: Any = None, **options: Any) -> Any:
        from core.errors import check_range
        from core.quantization import quantize_model

        check_range("accuracy_threshold", accuracy_threshold, low=0.0, high=1.0)
        if sensitive_layers:
            options["exclude"] = tuple(sensitive_layers)
        self.last = quantize_model(model, _data(model, data), self.method,
                                   out_dir=self._out("quantize"),
                                   tolerance=round(1.0 - accuracy_threshold, 6),
                                   measure_options=self.measure_options, **options)
        return self.last["quantized_model"]
