"""``ModelCompressor``: the seed documents' chaining facade over the prune/quantize/distill verbs.

It only forwards: each step calls one verb on the current variant, writes a run folder under
``workdir`` and makes that folder the input of the next step (so the lineage is kept). The
seeds' argument names are accepted as aliases (``prune(amount=0.3,
method='l1_unstructured')``, ``quantize(mode='dynamic', dtype=torch.qint8)``,
``benchmark(torch.randn(1, 9), num_runs=100)``, ``distill(student_model=...,
train_loader=...)``); see docs/seed-guide.md.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import make_bundle, new_run_id
from core.errors import InvalidParameterError
from core.runs import RunResult

__all__ = ["ModelCompressor"]


class ModelCompressor:
    """``ModelCompressor(model, data).prune(...).quantize(...)``; ``.benchmark()``, ``.save()``.

    ``model`` is an nn.Module, a model file or a run folder; ``data`` a Dataset, a data set
    name or a DataLoader (default: the run folder's data, else the one built-in data set
    whose input shape and classes fit the model; ``notes`` says which). Each step returns
    the compressor, so steps chain; ``history`` holds every step's RunResult.
    """

    def __init__(self, model: Any, data: Any = None, *, workdir: str | Path = "results",
                 measure_options: dict[str, Any] | None = None) -> None:
        self.original: Any = model
        self.current: Any = model
        self.data = data
        self.workdir = Path(workdir)
        self.measure_options = measure_options
        self.history: list[RunResult] = []
        self.notes: list[str] = []

    def _data(self) -> Any:
        from core.seed_compat import resolve_data

        if self.data is None and not isinstance(self.current, (str, Path)):
            self.data = resolve_data(self.current)
            self.notes.append(f"No data given: using the built-in '{self.data.name}' data set, "
                              "the one whose input shape and classes fit the model.")
        elif self.data is not None and not isinstance(self.data, (str, Path)) and \
                type(self.data).__name__ != "Dataset":
            self.data = resolve_data(self.current, self.data)
        return self.data

    def _step(self, verb: Any, operation: str, config: Any, **kwargs: Any) -> ModelCompressor:
        result = verb(self.current, self._data(), config, out_dir=self.workdir /
                      new_run_id(operation), measure_options=self.measure_options, **kwargs)
        self.history.append(result)
        self.current = result.run_dir
        return self

    def _current_kind(self) -> str:
        if not isinstance(self.current, (str, Path)):
            return "module"
        from core.artifacts import load_model

        return load_model(self.current).kind

    def prune(self, method: str = "structured-l2", sparsity: float | None = None, *,
              amount: float | None = None, **config: Any) -> ModelCompressor:
        """Prune the current variant (``core.pruning.PruningConfig``; seed: ``amount=``)."""
        from core.pruning import PruningConfig, prune
        from core.pruning._seed import seed_pruning_options

        values = seed_pruning_options(
            method, amount=amount, target_sparsity=config.pop("target_sparsity", None),
            sparsity=sparsity, gradual=config.pop("gradual", None), options=config)
        return self._step(prune, "prune", PruningConfig.from_dict(values))

    def quantize(self, method: str | None = None, *, mode: str | None = None, dtype: Any = None,
                 **options: Any) -> ModelCompressor:
        """Quantize the current variant (``core.quantization``; seed: ``mode=``, ``dtype=``).

        ``mode='dynamic'`` is torch dynamic INT8 on a torch model and ONNX Runtime dynamic
        INT8 on an ONNX one (a pruned user model's run folder holds model.onnx).
        """
        from core.quantization import make_config, quantize
        from core.quantization._seed import calibration_option, seed_method

        if method is None:
            method = seed_method(mode=mode, dtype=dtype, qat_epochs=options.get("epochs"),
                                 onnx_input=self._current_kind() == "onnx")
        return self._step(quantize, "quantize", make_config(method, calibration_option(options)))

    def distill(self, method: str = "soft-target", width: float = 0.5, *,
                student_model: Any = None, train_loader: Any = None, **config: Any) -> Any:
        """Distil the current variant into a student (``width`` times as wide, or the seed's
        ``student_model``, which is trained in place and returned)."""
        from core.distillation import DistillConfig, distill

        if train_loader is not None:
            from core.seed_compat import dataset_from_loader

            self.data = dataset_from_loader(train_loader)
        cfg = DistillConfig.from_dict({"method": method, "width": width, **config})
        self._step(distill, "distill", cfg, student=student_model)
        if student_model is None:
            return self
        _load_trained(student_model, Path(self.current), self.data)
        return student_model.eval()

    @property
    def report(self) -> dict[str, Any]:
        """The report of the last step (baseline vs result, measured side by side)."""
        if not self.history:
            raise ValueError("No step has run yet: call prune(), quantize() or distill().")
        return self.history[-1].report

    def _loaded(self, model: Any) -> Any:
        if not isinstance(model, (str, Path)):
            return model
        from core.artifacts import load_model, read_report
        from core.quantization import load_artifact

        if read_report(model).get("operation") == "quantize":
            for name in ("model.pt2", "model.pt", "model.onnx"):
                if (Path(model) / name).is_file():
                    return load_artifact(Path(model) / name)
        return load_model(model).model

    def benchmark(self, input_data: Any = None, num_runs: int | None = None) -> dict[str, Any]:
        """Measure the current variant under the protocol; returns its measurement dict.

        Seed form ``benchmark(torch.randn(1, 9), num_runs=100)``: the current and the
        original model are each run ``num_runs`` times on that input, interleaved.
        """
        if input_data is not None or num_runs is not None:
            return self._benchmark_input(input_data, num_runs or 100)
        from core.runs import benchmark_model

        if not isinstance(self.current, (str, Path)):
            from core.measure import measure

            return measure(self.current, self._data(),
                           **(self.measure_options or {})).to_dict()
        out = self.workdir / new_run_id("benchmark")
        report = benchmark_model(self.current, self.data or _run_data(self.current),
                                 out_dir=out, measure_options=self.measure_options)
        return report["result"]

    def _benchmark_input(self, input_data: Any, num_runs: int) -> dict[str, Any]:
        from core.errors import check_range
        from core.measure import as_predictor, interleaved_latency

        check_range("num_runs", num_runs, low=1, high=100_000, kind=int)
        if input_data is None:
            raise InvalidParameterError("input_data", "an input batch (tensor or array)", None)
        x = input_data.detach().cpu().numpy() if hasattr(input_data, "detach") else \
            np.asarray(input_data)
        x = np.ascontiguousarray(x, dtype=np.float32)
        threads = int((self.measure_options or {}).get("threads", 1))
        preds = {"compressed": as_predictor(self._loaded(self.current), threads=threads),
                 "original": as_predictor(self._loaded(self.original), threads=threads)}
        # A near-zero budget gives one call per round: exactly num_runs timed calls each.
        lat = interleaved_latency(preds, x, batch_sizes=(len(x),), budget_s=1e-9,
                                  rounds=num_runs)
        key = str(len(x))
        res, base = lat["compressed"][key], lat["original"][key]
        out = {"batch_size": len(x), "num_runs": res["runs"], "threads": threads,
               "latency_ms": {"p50": res["p50"], "p95": res["p95"]},
               "original_latency_ms": {"p50": base["p50"], "p95": base["p95"]},
               "speedup": base["p50"] / res["p50"] if res["p50"] else None,
               "fps": len(x) * 1000.0 / res["p50"] if res["p50"] else None}
        if self.history:
            rep = self.report
            out.update(size_bytes=rep["result"]["size_bytes"],
                       original_size_bytes=self.history[0].report["baseline"]["size_bytes"])
        return out

    def save(self, path: str | Path) -> Path:
        """Write the current variant: a ``.zip`` path gets the download bundle; a model path
        (``.onnx``, ``.pt``, ``.pt2``) gets the variant's model file. A ``.pt`` asked of an
        ONNX variant is written as ``.onnx`` beside it (a warning says so)."""
        if not self.history:
            raise ValueError("Nothing to save yet: run a compression step first.")
        path = Path(path)
        run = Path(self.current)
        if path.suffix == ".zip":
            return make_bundle(run, path)
        for name in (f"model{path.suffix}", "model.pt", "model.pt2", "model.onnx"):
            src = run / name
            if src.is_file() and name != "model.json":
                target = path if src.suffix == path.suffix else path.with_suffix(src.suffix)
                if target != path:
                    warnings.warn(f"The compressed model is {src.suffix[1:].upper()}: saved as "
                                  f"'{target.name}' (not '{path.name}').", stacklevel=2)
                shutil.copyfile(src, target)
                data_file = run / f"{name}.data"
                if data_file.is_file():  # ONNX external data, under the name the graph uses
                    shutil.copyfile(data_file, target.parent / data_file.name)
                return target
        return make_bundle(run, path.with_suffix(".zip"))


def _load_trained(student: Any, run_dir: Path, data: Any) -> None:
    """Put the distilled weights into the caller's student (the verb trains a copy), from the
    run's safetensors or, for a user module, its model.onnx initializers; checked by outputs."""
    import torch

    from core.artifacts import load_model
    from core.errors import UnsupportedModelError
    from core.measure import ort_session

    loaded = load_model(run_dir)
    if loaded.kind == "builtin":
        student.load_state_dict(loaded.model.state_dict())
        return
    import onnx
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in
             onnx.load(str(run_dir / "model.onnx")).graph.initializer}
    state = student.state_dict()
    if not all(k in inits and tuple(inits[k].shape) == tuple(v.shape) for k, v in state.items()):
        raise UnsupportedModelError("The distilled student is saved as model.onnx only, and its "
                                    "weights do not map back onto the given module by name; "
                                    f"use the run folder '{run_dir.name}'.")
    student.load_state_dict({k: torch.from_numpy(inits[k].copy()) for k in state})
    X = data.X_test[:64]
    with torch.inference_mode():
        ref = student.eval()(torch.from_numpy(X)).numpy()
    got = ort_session(run_dir / "model.onnx").run(None, {"input": X})[0]
    if not np.allclose(ref, got, atol=1e-4):
        raise UnsupportedModelError("The weights read back from model.onnx do not reproduce "
                                    f"its outputs; use the run folder '{run_dir.name}'.")


def _run_data(run_dir: str | Path) -> Any:
    from core.artifacts import read_report
    from core.runs import data_from_report

    return data_from_report(read_report(run_dir))
