"""One way in for every verb: a model (module, model file or run folder) and its data.

``open_input`` applies one set of rules, each with one message, so quantize, prune, distill,
profile, tune, scale, fuse, factorize and benchmark answer the same bad input the same way:

- a run folder uses the data its report records unless data is given (a name equal to the
  recorded source means the recorded data: same split and preprocessing);
- a model file or a live model needs data (``InvalidParameterError('data', ...)``);
- data is a ``Dataset``, a built-in name, a ``.csv``/``.npz`` path or a DataLoader;
- the model's input shape, where known, equals the data's (a file's 3-D X fed as the model
  declares: rows (T, F) as given, or (1, H, W) images; ``core.data.fed_to``);
- anything else is refused as the ``model`` (or the caller's role name, e.g. ``teacher``).

Messages name files by their base name only (never a server path).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import InvalidParameterError, UnsupportedModelError

__all__ = ["DATA_RULE", "MODEL_RULE", "ModelInput", "kind_name", "model_kind", "open_data",
           "open_input"]

DATA_RULE = ("given with a model file or a model object (a built-in data set name, a .csv or "
             ".npz file, or a Dataset)")
DATA_KINDS = "a Dataset, a built-in data set name, a .csv/.npz path or a DataLoader"
MODEL_RULE = "a torch.nn.Module, an ONNX Runtime session, a run folder or a model file"
_KIND_NAMES = {"builtin": "a built-in model", "module": "a PyTorch module",
               "onnx": "an ONNX model", "torchscript": "a TorchScript model",
               "export": "a torch.export (.pt2) model"}


@dataclass(frozen=True)
class ModelInput:
    """An opened input: the model, what kind it is, its data and where it came from.

    ``kind``: 'builtin', 'module', 'onnx', 'torchscript' or 'export'. ``files``: the baseline
    artifact file(s) whose bytes are its size: the model as loaded and measured (a fixed-batch
    ONNX made dynamic: that copy, as benchmark ships it; empty for a live object).
    ``run_id``/``report``: the run folder's name and report (None otherwise). ``path``: the
    run folder or file given.
    ``loaded``: the ``core.artifacts.LoadedModel`` (None for a live object).
    """

    model: Any
    kind: str
    data: Any
    files: list[Path] = field(default_factory=list)
    run_id: str | None = None
    report: dict[str, Any] | None = None
    path: Path | None = None
    loaded: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    output_name: str | None = None

    @property
    def notes(self) -> list[str]:
        """What loading did that the report should say (e.g. a fixed batch made dynamic)."""
        return list(self.meta.get("notes", []))

    @property
    def written_files(self) -> list[Path]:
        """The ONNX model as written (the file given or the run's model.onnx), for a caller
        that keeps a converted model but not the session: a temporary dynamic-batch copy
        (``files``) is deleted with its session."""
        if self.kind != "onnx" or self.path is None:
            return list(self.files)
        from core.artifacts._onnx import onnx_files

        return onnx_files(self.path / "model.onnx" if self.path.is_dir() else self.path)

    @property
    def onnx_file(self) -> Path | None:
        """The ONNX file the session runs (a dynamic-batch copy while the session lives)."""
        return Path(self.loaded.path) if self.kind == "onnx" and self.loaded else None


def model_kind(model: Any) -> str:
    """The kind of a live model: 'onnx' (ORT session), 'torchscript', 'export' (a
    torch.export program's module), 'builtin' (a studio family) or 'module'."""
    if type(model).__name__ == "InferenceSession":
        return "onnx"
    import torch

    from core.models import is_builtin

    if isinstance(model, torch.jit.ScriptModule):
        return "torchscript"
    if is_builtin(model):
        return "builtin"
    try:
        model.eval()
    except NotImplementedError:  # ExportedProgram.module() refuses eval()
        return "export"
    return "module"


def kind_name(kind: str) -> str:
    """A model kind in words, for messages ('an ONNX model')."""
    return _KIND_NAMES.get(kind, f"a {kind} model")


def _is_loader(data: Any) -> bool:
    import torch

    return isinstance(data, torch.utils.data.DataLoader)


def _recorded(report: dict[str, Any] | None, name: str, label_column: str,
              seed: int | None) -> bool:
    """Whether a data set name is the one the run's report records (same label and seed)."""
    spec = (report or {}).get("data") or {}
    return (report is not None and name == str(spec.get("source", "digits"))
            and label_column == spec.get("label_column", "label")
            and (seed is None or seed == spec.get("seed", 0)))


def _dataset(data: Any, *, label_column: str, seed: int | None,
             report: dict[str, Any] | None = None) -> Any:
    """The Dataset for ``data`` (None when not given, or when it names the run's own data)."""
    from core.data import Dataset, load_dataset

    if data is None or isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        if _recorded(report, str(data), label_column, seed):
            return None  # the run's recorded data, rebuilt by open_variant
        return load_dataset(data, label_column=label_column, seed=seed or 0)
    if _is_loader(data):
        from core.auto._facade import dataset_from_loaders

        return dataset_from_loaders(data, data)  # a DataLoader: its batches are the data
    raise InvalidParameterError("data", DATA_KINDS, type(data).__name__)


def _open_run(path: Path, data: Any, *, label_column: str, seed: int | None) -> ModelInput:
    from core.artifacts import read_report
    from core.runs import open_variant

    report = read_report(path)  # refuses a folder that is not a studio run, by its name
    ds = _dataset(data, label_column=label_column, seed=seed, report=report)
    variant = open_variant(path, data=ds)
    loaded = variant.loaded
    return ModelInput(loaded.model, loaded.kind, variant.data, variant.files(), variant.run_id,
                      variant.report, path, loaded, dict(loaded.meta),
                      loaded.meta.get("output_name"))


def _open_file(path: Path, data: Any, *, output_name: str | None, label_column: str,
               seed: int | None) -> ModelInput:
    from core.artifacts import load_model

    ds = _dataset(data, label_column=label_column, seed=seed)
    loaded = load_model(path, output_name=output_name,  # the data's classes pick the scores
                        num_classes=ds.num_classes if ds is not None else None)
    return ModelInput(loaded.model, loaded.kind, ds, loaded.files(), None, None, path, loaded,
                      dict(loaded.meta), loaded.meta.get("output_name", output_name))


def _open_object(model: Any, data: Any, *, role: str, label_column: str,
                 seed: int | None) -> ModelInput:
    import torch

    if model is None or not (isinstance(model, torch.nn.Module)
                             or type(model).__name__ == "InferenceSession"):
        raise InvalidParameterError(role, MODEL_RULE,
                                    None if model is None else type(model).__name__)
    return ModelInput(model, model_kind(model),
                      _dataset(data, label_column=label_column, seed=seed))


def _check_shape(inp: ModelInput, role: str) -> ModelInput:
    """The model's input shape, where it is known, equals the data's (0: a free dim); a
    file's 3-D X is laid out as the model declares (``core.data.fed_to``) first."""
    shape = inp.loaded.input_shape if inp.loaded is not None else getattr(
        inp.model, "input_shape", None)
    if not shape and inp.data is not None and inp.kind in ("torchscript", "export"):
        return _laid_out_as_it_runs(inp)
    if not shape or inp.data is None:
        return inp
    from core.data import fed_to

    got = tuple(shape)
    inp = replace(inp, data=fed_to(inp.data, got))
    want = tuple(inp.data.input_shape)
    if len(got) != len(want) or any(g and g != w for g, w in zip(got, want)):
        raise InvalidParameterError(f"{role} input shape", f"equal to the data's {list(want)}",
                                    list(got))
    return inp


def _laid_out_as_it_runs(inp: ModelInput) -> ModelInput:
    """A TorchScript or .pt2 model declares no input shape: a file's 3-D X keeps its default
    layout if the model runs on two rows of it, else takes the other (channel axis added or
    taken away) if the model runs on that; a Conv1d over (N, C, T) was fed (N, 1, C, T).
    A model returning several outputs is refused here, before any verb fails on the tuple."""
    from core.data import fed_to

    data = inp.data
    out = _output_on(inp.model, data.X_train[:2])
    if out is _FAILED and data.spec.channel_axis is not None:
        other = fed_to(data, (0, 0) if data.spec.channel_axis else (0, 0, 0))
        out = _output_on(inp.model, other.X_train[:2]) if other is not data else _FAILED
        inp = inp if out is _FAILED else replace(inp, data=other)
    if isinstance(out, (tuple, list, dict)):
        raise UnsupportedModelError(
            f"The model returns {len(out)} outputs (a {type(out).__name__}); from a "
            "TorchScript or .pt2 model the studio measures one scores tensor [batch, "
            "classes]. Save a forward that returns the logits alone, or export it to ONNX, "
            "where the scores output is picked (--output-name).")
    return inp


_FAILED = object()


def _output_on(model: Any, X: Any) -> Any:
    """What ``model`` (TorchScript in eval mode for the call, or a .pt2 module) returns on
    X, or _FAILED when it raises."""
    import torch

    # a .pt2 module refuses train()/eval() (its graph is fixed); TorchScript's BatchNorm
    # would move its running statistics in train mode
    was_training = isinstance(model, torch.jit.ScriptModule) and model.training
    try:
        if was_training:
            model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(X))
    except Exception:
        return _FAILED
    finally:
        if was_training:
            model.train()


def open_input(model_or_run: Any, data: Any = None, *, output_name: str | None = None,
               label_column: str = "label", seed: int | None = None, role: str = "model",
               data_required: bool = True) -> ModelInput:
    """Open a model (nn.Module, ORT session, model file or run folder) with its data.

    ``output_name`` names the scores output of a several-output ONNX file; ``label_column``
    and ``seed`` are used when data is loaded by name or path; ``role`` names the model in
    messages ('teacher'); with ``data_required=False`` a model without data opens with
    ``data=None`` (e.g. profiling on a given input tensor).
    """
    if isinstance(model_or_run, (str, Path)):
        path = Path(model_or_run)
        opts = {"label_column": label_column, "seed": seed}
        inp = _open_run(path, data, **opts) if path.is_dir() else _open_file(
            path, data, output_name=output_name, **opts)
    else:
        inp = _open_object(model_or_run, data, role=role, label_column=label_column,
                           seed=seed)
    if inp.data is None and data_required:
        raise InvalidParameterError("data", DATA_RULE, None)
    return _check_shape(inp, role)


def open_data(data: Any, *, label_column: str = "label", seed: int | None = None) -> Any:
    """Data alone, by the same rules (for a verb given a family name rather than a model)."""
    ds = _dataset(data, label_column=label_column, seed=seed)
    if ds is None:
        raise InvalidParameterError("data", DATA_KINDS, None)
    return ds
