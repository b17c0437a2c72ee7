"""Run-level workflows every area starts from: train a baseline, benchmark, open a variant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from core.artifacts import LoadedModel, load_model, read_report, save_model, staging, write_run
from core.callbacks import Callbacks
from core.data import Dataset, dataset_from_spec, load_dataset
from core.errors import InvalidParameterError
from core.registry import resolve_config
from core.training import TrainConfig, seed_everything, train

__all__ = [
    "RunResult", "Variant", "benchmark_model", "data_from_report", "open_variant",
    "train_baseline",
]


@dataclass(frozen=True)
class RunResult:
    """What every verb returns: the run folder it wrote and its report."""

    run_dir: Path
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), **self.report}

    def __getitem__(self, key: str) -> Any:
        """Read access to the report: ``result["ratios"]`` is ``result.report["ratios"]``."""
        return self.report[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.report.get(key, default)


@dataclass
class Variant:
    """A run folder opened for further work: its model, its data and its report."""

    run_dir: Path
    loaded: LoadedModel
    data: Dataset
    report: dict[str, Any]

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def files(self) -> list[Path]:
        """The run's own artifact file(s) whose bytes make its size: its model.onnx as
        shipped, even where it is loaded through a batch-dynamic copy (a fixed-batch INT8
        file of 82,772 bytes was sized as its 81,519-byte copy by compare)."""
        from core.artifacts._onnx import onnx_files

        shipped = self.run_dir / "model.onnx"
        if self.loaded.kind == "onnx" and shipped.is_file():
            return onnx_files(shipped)
        return self.loaded.files()


def data_from_report(report: dict[str, Any]) -> Dataset:
    """Rebuild the data set a run was made on (same source, split and preprocessing)."""
    return dataset_from_spec(report.get("data") or {"source": "digits"})


def open_variant(run_dir: str | Path, *, data: Dataset | None = None) -> Variant:
    """Open a run folder: load its model (built-in weights or ONNX) and its data set."""
    run_dir = Path(run_dir)
    report = read_report(run_dir)
    return Variant(run_dir, load_model(run_dir), data or data_from_report(report), report)


def train_baseline(
    model: str = "cnn",
    data: str | Dataset = "digits",
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    model_kwargs: dict[str, Any] | None = None,
    measure_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Train a built-in model family on a data set and write a measured run folder.

    ``config``: a TrainConfig or a mapping of its fields; ``overrides`` replace its fields
    (``train_baseline("cnn", "digits", out_dir=..., epochs=3)``)."""
    config = resolve_config(config, overrides, cls=TrainConfig)
    dataset = data if isinstance(data, Dataset) else load_dataset(data, seed=config.seed)
    cb = Callbacks.ensure(callbacks)
    seed_everything(config.seed)
    from core.models import model_for_data  # torch: imported only where a model is built

    net = model_for_data(model, dataset.input_shape, dataset.num_classes, **(model_kwargs or {}))
    with staging(out_dir, overwrite=overwrite) as tmp:
        result = train(net, dataset, config, callbacks=cb)
        saved = save_model(net, tmp, data=dataset)
        report = write_run(
            tmp, operation="train", method=None, data=dataset, result_model=net,
            result_files=[tmp / "model.safetensors"], seed=config.seed,
            config={"model": model, "model_kwargs": net.spec().kwargs, **config.to_dict()},
            extra={"training": result.to_dict(), "onnx_parity_max_abs_diff": saved["onnx_parity"]},
            measure_options=measure_options, callbacks=cb, warnings=result.warnings,
        )
    return RunResult(Path(out_dir), report)


def benchmark_model(
    model: str | Path,
    data: str | Dataset | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    label_column: str = "label",
    measure_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    output_name: str | None = None,
) -> RunResult:
    """Measure a model file or run folder on a data set and write a run folder for it.

    ``data``: default the run folder's own data set; a model file needs it (no silent
    default, as in every verb).
    Benchmarking has no method options (``config`` stays None or empty: the verbs' shape);
    ``output_name`` names the class-scores output of a several-output ONNX model (default:
    chosen by shape and name; an integer label output is never scored)."""
    import shutil

    from core.artifacts._onnx import copy_onnx, io_entry

    if config:
        raise InvalidParameterError("config", "None (benchmarking has no options; see "
                                    "measure_options)", config)
    from core.inputs import open_input

    if not isinstance(model, (str, Path)):
        raise InvalidParameterError("model", "a run folder or a model file (core.measure "
                                    "measures a live model)", type(model).__name__)
    inp = open_input(model, data, output_name=output_name, label_column=label_column)
    loaded, dataset = inp.loaded, inp.data
    with staging(out_dir, overwrite=overwrite, inputs=[model]) as tmp:
        if loaded.kind == "builtin":
            save_model(loaded.model, tmp, data=dataset)
            files = [tmp / "model.safetensors"]
        elif loaded.kind == "onnx":  # with its external data, if any
            files = copy_onnx(loaded.path, tmp / "model.onnx")
            if inp.output_name is not None:  # re-opening the run scores the same output
                (tmp / "model.json").write_text(json.dumps({"output_name": inp.output_name}))
        else:
            target = tmp / f"model{Path(loaded.path).suffix}"
            shutil.copyfile(loaded.path, target)
            files = [target]
        report = write_run(
            tmp, operation="benchmark", method=None, data=dataset, result_model=loaded.model,
            result_files=files, config={"model": Path(model).name},  # never a server path
            callbacks=callbacks,
            measure_options=measure_options, warnings=loaded.meta.get("notes", []),
            extra={"onnx": io_entry(loaded.meta)} if loaded.kind == "onnx" else None,
        )
    return RunResult(Path(out_dir), report)
