"""What the seed documents' facades share: data from a DataLoader (or inferred), the device
check, and results that answer the seeds' ``result['quantized_model']`` look-ups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidParameterError
from core.runs import RunResult

__all__ = ["SeedRunResult", "check_device", "dataset_from_loader", "infer_builtin_data",
           "resolve_data"]


def check_device(device: str | None) -> str:
    """'cpu', or 'cuda' where torch sees a GPU; anything else is one clear error."""
    import torch

    name = str(device or "cpu")
    if name == "cpu":
        return name
    if name.startswith("cuda"):
        if torch.cuda.is_available():
            return name
        raise InvalidParameterError("device", "'cpu' on this machine (torch sees no CUDA GPU "
                                    "here; the studio measures every variant on the CPU)", name)
    raise InvalidParameterError("device", "'cpu' or 'cuda'", name)


def _arrays(loader: Any) -> tuple[np.ndarray, np.ndarray]:
    from core.auto._facade import _arrays as loader_arrays

    try:
        return loader_arrays(loader)
    except (TypeError, IndexError, ValueError) as exc:
        raise InvalidParameterError("train_loader", "a DataLoader (or iterable) of (inputs, "
                                    "labels) batches", type(loader).__name__) from exc


def dataset_from_loader(train_loader: Any, test_loader: Any = None, *, seed: int = 0,
                        val_fraction: float = 0.15, test_fraction: float = 0.2) -> Any:
    """A studio Dataset from DataLoaders: with no test loader, test rows are cut from train."""
    from core.auto._facade import dataset_from_loaders
    from core.data import Dataset
    from core.data._dataset import DataSpec

    if test_loader is not None:
        return dataset_from_loaders(train_loader, test_loader, val_fraction=val_fraction,
                                    seed=seed)
    X, y = _arrays(train_loader)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test, n_val = int(round(len(y) * test_fraction)), int(round(len(y) * val_fraction))
    te, va, tr = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return Dataset("loader", X[tr], y[tr], X[va], y[va], X[te], y[te], classes, {},
                   DataSpec(source="loader", seed=seed))


BUILTIN_DATA = ("digits", "wine", "breast_cancer", "health")


def infer_builtin_data(model: Any) -> Any:
    """The one built-in data set whose input shape and class count fit ``model``."""
    import torch

    from core.data import load_dataset

    fits = []
    for name in BUILTIN_DATA:
        ds = load_dataset(name)
        try:
            with torch.inference_mode():
                out = model.eval()(torch.zeros(2, *ds.input_shape))
        except Exception:  # a shape this model does not take
            continue
        if getattr(out, "ndim", 0) == 2 and out.shape[1] == ds.num_classes:
            fits.append(ds)
    if len(fits) != 1:
        raise InvalidParameterError(
            "data", "given (a Dataset, a built-in name, a .csv/.npz or a train_loader): "
            f"{'no' if not fits else 'more than one'} built-in data set fits this model",
            None)
    return fits[0]


def resolve_data(model: Any, data: Any = None, *, train_loader: Any = None,
                 test_loader: Any = None, seed: int = 0) -> Any:
    """``data`` as given, else from the loaders, else the built-in set that fits the model."""
    from core.data import Dataset

    if data is not None:
        if isinstance(data, Dataset) or isinstance(data, (str, Path)):
            return data
        return dataset_from_loader(data, seed=seed)  # a DataLoader passed as data
    if train_loader is not None:
        return dataset_from_loader(train_loader, test_loader, seed=seed)
    if isinstance(model, (str, Path)):
        return None  # a run folder brings its data
    return infer_builtin_data(model)


@dataclass(frozen=True)
class SeedRunResult(RunResult):
    """A RunResult that also answers the seeds' keys: the model (``'quantized_model'``,
    ``'pruned_model'``, ``'model'``), ``'metrics'`` (compression_ratio, sizes, speed-ups,
    accuracy) and ``'run_dir'``/``'report'``."""

    model_key: str = "model"
    notes: tuple[str, ...] = ()
    trained_model: Any = None  # the model after a seed's train_fn, when one ran

    def model(self) -> Any:
        if self.trained_model is not None:
            return self.trained_model
        from core.artifacts import load_model
        from core.quantization import load_artifact

        if self.report.get("operation") == "quantize":
            for name in ("model.pt2", "model.pt", "model.onnx"):
                if (self.run_dir / name).is_file():
                    return load_artifact(self.run_dir / name)
        loaded = load_model(self.run_dir)
        if loaded.kind == "onnx" and (self.run_dir / "model.pt2").is_file():
            return load_model(self.run_dir / "model.pt2").model  # the torch form: trainable
        return loaded.model

    def metrics(self) -> dict[str, Any]:
        base, res = self.report.get("baseline") or {}, self.report.get("result") or {}
        ratios = self.report.get("ratios") or {}
        return {"compression_ratio": ratios.get("size_reduction"),
                "original_size_mb": base.get("size_bytes", 0) / 2**20,
                "compressed_size_mb": res.get("size_bytes", 0) / 2**20,
                "original_params": base.get("params"), "params": res.get("params"),
                "nonzero_params": res.get("nonzero_params"),
                "speedup_b1": ratios.get("speedup_b1"), "speedup_b64": ratios.get("speedup_b64"),
                "original_accuracy": base.get("accuracy"), "accuracy": res.get("accuracy")}

    def __getitem__(self, key: str) -> Any:
        if key in (self.model_key, "model"):
            return self.model()
        if key == "metrics":
            return self.metrics()
        if key in ("run_dir", "report"):
            return getattr(self, key)
        raise KeyError(f"{key!r} (this result has {self.keys()})")

    def keys(self) -> list[str]:
        return [self.model_key, "metrics", "run_dir", "report"]

    @classmethod
    def of(cls, result: RunResult, model_key: str, notes: tuple[str, ...] = ()
           ) -> SeedRunResult:
        return cls(result.run_dir, result.report, model_key, notes)
