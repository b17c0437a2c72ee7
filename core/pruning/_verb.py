"""The ``prune`` verb: prune a copy, materialise it, save it portably, measure it side by side."""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from core.artifacts import export_onnx, save_model, staging, write_run
from core.artifacts._onnx import onnx_files
from core.artifacts._sparse import SPARSE_FILE, save_sparse_state
from core.artifacts._trust import record_studio_made
from core.callbacks import Callbacks
from core.errors import InvalidParameterError, StudioError, UnsupportedModelError
from core.pruning._config import PruningConfig
from core.pruning._engine import layer_table
from core.pruning._onnx import run_with_batchnorm
from core.registry import get_method, resolve_config
from core.runs import RunResult

__all__ = ["prune", "prune_model", "unsupported_methods"]


def _resolve(source: Any, data: Any
             ) -> tuple[Any, str, Any, list[Path], str | None, str | None, list[str]]:
    """(model, kind, dataset, baseline files, parent run id, why an ONNX graph did not
    convert, notes for the report) by core.inputs' rules, the model in a trainable torch
    form: an ONNX graph converted (or a run's torch file beside it), a torch.export program
    wrapped."""
    from core.inputs import open_input

    inp = open_input(source, data)
    model, kind = inp.model, inp.kind
    if kind == "onnx" and inp.loaded is None:  # a live ORT session has no graph to convert
        raise InvalidParameterError("model", "a torch.nn.Module, a run folder or a model "
                                    "file (pass an ONNX model as its .onnx file)",
                                    type(model).__name__)
    why, notes = None, inp.notes
    if kind == "onnx":  # a torch form beside model.onnx (a pruned user model) is used
        beside = inp.run_id and _torch_form(inp.path)
        model, kind, why = (*beside, None) if beside else _converted(inp.loaded)
        notes += _dropped_outputs(inp) if kind == "module" and not beside else []
    if kind == "export":
        model = _Exported(model)
    # The converted module outlives the session: the size is the ONNX as written.
    return model, kind, inp.data, inp.written_files, inp.run_id, why, notes


def _dropped_outputs(inp: Any) -> list[str]:
    """A note when the converted module keeps only the scored output of several."""
    names = [o.name for o in inp.loaded.model.get_outputs()]
    others = [n for n in names if n != inp.output_name]
    if not inp.output_name or not others:
        return []
    return [f"The pruned model computes only the scored output '{inp.output_name}'; the "
            f"input's other output(s) {', '.join(repr(n) for n in others)} are not in it."]


def _converted(loaded: Any) -> tuple[Any, str, str | None]:
    """An ONNX model as a trainable torch module (kind 'module'), or the ONNX model itself
    (kind 'onnx', refused by every method) where its graph cannot be converted exactly, with
    the converter's reason (e.g. the operator without a converter: a GRU or LSTM)."""
    from core.artifacts import trainable_module
    from core.artifacts._convert_modules import FixedBatch

    try:
        module = trainable_module(loaded)
    except StudioError as exc:
        return loaded.model, "onnx", str(exc)
    if isinstance(module, FixedBatch):
        return loaded.model, "onnx", None
    return module, "module", None


def _torch_form(folder: Path) -> tuple[Any, str] | None:
    """The run folder's model.pt2 / model.pt (under the trust rules: the studio's own files
    load, others need the opt-in), or None when it holds only ONNX."""
    from core.artifacts import load_model

    for name in ("model.pt2", "model.pt"):
        if (folder / name).is_file():
            loaded = load_model(folder / name)
            return loaded.model, loaded.kind
    return None


class _Exported(nn.Module):
    """A torch.export program's module, made trainable: its train()/eval() are refused by
    torch, so mode switches stop here (the graph keeps the mode it was exported in)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.program = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "_Exported":
        self.training = mode
        return self


def _copy(model: Any) -> Any:
    """A deep copy, so the caller's model (and run folder) are never touched (a TorchScript
    module deep-copies too, parameters included, but as clones with a grad_fn, which no
    optimizer takes: they are made leaves again)."""
    out = copy.deepcopy(model)
    if isinstance(out, torch.jit.ScriptModule):
        with torch.no_grad():
            for p in out.parameters():
                p.detach_().requires_grad_(True)
    return out


def _check_fits(model: Any, data: Any) -> None:
    from core.training import check_model_fits  # the one rule, shared with train and continual

    check_model_fits(model, data)


def _save_native(model: Any, tmp: Path, data: Any, kind: str) -> tuple[list[Path], list[str]]:
    """The torch form beside model.onnx: a torch.export program with a dynamic batch
    (model.pt2). A TorchScript input gets none: model.onnx is its deployable form."""
    if kind == "torchscript":
        return [], ["No model.pt is written: TorchScript is deprecated in PyTorch (and "
                    "torch.export cannot trace a TorchScript module), so the pruned model's "
                    "deployable form is model.onnx."]
    try:
        batch = torch.export.Dim("batch", min=1, max=65_536)
        program = torch.export.export(model.eval(), (torch.from_numpy(data.X_test[:2]),),
                                      dynamic_shapes=({0: batch},))
        torch.export.save(program, str(tmp / "model.pt2"))
        record_studio_made([tmp / "model.pt2"])  # the studio wrote these bytes itself
        return [tmp / "model.pt2"], []
    except Exception as exc:
        return [], [f"The pruned model could not be saved with torch.export "
                    f"({type(exc).__name__}); model.onnx is its only saved form."]


def _save_user_model(model: Any, tmp: Path, data: Any, kind: str
                     ) -> tuple[list[Path], dict[str, Any], list[str]]:
    """model.onnx (checked against torch on test rows) plus a native torch file.

    Returns the deployable files (ONNX + external data: the size), the extra report fields
    (parity, every format's bytes) and warnings."""
    example = torch.from_numpy(data.X_test[:1])
    parity = export_onnx(model, tmp / "model.onnx", example, check_inputs=data.X_test[:64])
    deployable = onnx_files(tmp / "model.onnx")
    native, notes = _save_native(model, tmp, data, kind)
    if parity > 1e-3:
        notes.append(f"model.onnx differs from the torch model by up to {parity:.2e}.")
    formats = {"onnx": sum(f.stat().st_size for f in deployable)}
    for f in native:
        formats["torch.export" if f.suffix == ".pt2" else "torchscript"] = f.stat().st_size
    names = ", ".join(f.name for f in native)
    notes.append("Not a built-in family: the size is model.onnx's bytes (the deployable "
                 "artifact)" + (f"; {names} is the same model for torch, listed separately."
                                if native else "."))
    return deployable, {"onnx_parity_max_abs_diff": parity, "formats_bytes": formats}, notes


def _baseline_onnx(model: Any, data: Any, folder: Path) -> list[Path]:
    """The unpruned model exported the same way, so both sizes count ONNX bytes."""
    try:
        export_onnx(model, folder / "baseline.onnx", torch.from_numpy(data.X_test[:1]))
    except Exception:
        return []
    return onnx_files(folder / "baseline.onnx")


def _formats(deployable: list[Path], *native: Path) -> dict[str, int]:
    """Every saved format's bytes: the deployable ONNX (with external data) and the others."""
    names = {".safetensors": "safetensors", ".pt2": "torch.export", ".pt": "torchscript"}
    out = {"onnx": sum(f.stat().st_size for f in deployable)}
    out.update({names[f.suffix]: f.stat().st_size for f in native if f.is_file()})
    return out


def _builtin_baseline_onnx(source: Any, original: Any, data: Any, scratch: Path) -> list[Path]:
    """The unpruned built-in model's ONNX bytes: its run folder's model.onnx, else exported."""
    if isinstance(source, (str, Path)) and (Path(source) / "model.onnx").is_file():
        return onnx_files(Path(source) / "model.onnx")
    return _baseline_onnx(original, data, scratch)


def _refusal(kind: str, method: str, why: str | None = None, model: Any = None) -> str | None:
    """Why ``method`` cannot prune a model of this kind, or None when it can (``why``: the
    converter's own reason for an ONNX graph, said instead of the general one)."""
    from core.pruning._onnx import attention_product, channels_moved

    if kind == "onnx":
        if why:
            return f"Pruning needs a trainable torch form of the model: {why}"
        return ("Pruning needs a trainable torch form of the model, and this ONNX graph could "
                "not be converted to one exactly (an operator without a converter, or a batch "
                "size fixed in its shapes). Export the model with a dynamic batch, or prune the "
                "torch model from Python.")
    if PruningConfig(method=method).structured and kind in ("torchscript", "export"):
        return (f"Structured pruning rewrites layers, which needs a Python nn.Module; this is "
                f"a {'TorchScript' if kind == 'torchscript' else 'torch.export'} model. Use an "
                "unstructured method, or pass the model from Python.")
    if PruningConfig(method=method).structured and (where := attention_product(model)):
        return (f"Structured pruning cannot group the channels of this ONNX graph's attention "
                f"({where}, as an exported attention layer writes it): Torch-Pruning's "
                "grouping does not end on the reshapes around it. ONNX "
                "Runtime quantization (ort-dynamic-int8, ort-static-int8) and unstructured "
                "pruning (e.g. l1-unstructured) apply; a torch model with "
                "nn.MultiheadAttention can be pruned structurally from Python.")
    if PruningConfig(method=method).structured and (where := channels_moved(model)):
        return (f"Structured pruning cannot follow the channels of this ONNX graph: {where} "
                "moves the channel axis after a layer with weights (a channels-last block, "
                "e.g. ConvNeXt's LayerNorm and MatMul over channels), and Torch-Pruning's "
                "grouping does not end on it. ONNX Runtime quantization (ort-dynamic-int8, "
                "ort-static-int8) and unstructured pruning (e.g. l1-unstructured) apply.")
    return None


def unsupported_methods(model_or_run: Any, data: Any = None,
                        methods: Any = None) -> dict[str, str]:
    """The pruning methods (all registered ones, or ``methods``) that cannot run on this
    model, each with the reason ``prune`` would give; loads the model but prunes nothing."""
    from core.registry import list_methods

    model, kind, _, _, _, why, _ = _resolve(model_or_run, data)
    names = list(methods) if methods is not None else list(list_methods("pruning"))
    return {m: r for m in names if (r := _refusal(kind, m, why, model))}


@dataclass
class _Saved:
    """What a pruned model was saved as: the result model, its size files, the baseline's
    size files, report extras and warnings."""

    final: Any
    files: list[Path]
    base_files: list[Path]
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _save_builtin_structured(working: Any, original: Any, source: Any, dataset: Any,
                             tmp: Path, scratch: Path) -> _Saved:
    """A built-in family with its new widths: model.json + safetensors + model.onnx."""
    from core.pruning._structured import builtin_widths, materialise

    final, diff = materialise(working, dataset)
    saved = save_model(final, tmp, data=dataset)
    files = onnx_files(tmp / "model.onnx")  # the deployable artifact is the size
    extra = dict(widths_after=builtin_widths(final), materialise_max_abs_diff=diff,
                 onnx_parity_max_abs_diff=saved["onnx_parity"],
                 formats_bytes=_formats(files, tmp / "model.safetensors"))
    note = ("The size is model.onnx's bytes (the deployable artifact); model.safetensors is "
            "the same model for torch, listed separately.")
    return _Saved(final, files, _builtin_baseline_onnx(source, original, dataset, scratch),
                  extra, [note])


def _save_builtin_sparse(working: Any, dataset: Any, tmp: Path, base_files: list[Path]
                         ) -> _Saved:
    """A built-in family with zeroed weights: the sparse weights file beside a dense ONNX."""
    saved = save_model(working, tmp, data=dataset, extra_meta={"weights": SPARSE_FILE})
    dense = (tmp / "model.safetensors").stat().st_size
    (tmp / "model.safetensors").unlink()
    sparse = save_sparse_state(working.state_dict(), tmp / SPARSE_FILE)
    extra = dict(dense_weight_bytes=dense, sparse_weight_bytes=sparse,
                 onnx_parity_max_abs_diff=saved["onnx_parity"])
    note = (f"Unstructured sparsity brings no speed-up by itself: dense CPU kernels (torch "
            f"and ONNX Runtime) still multiply the zeros, so any latency change measured here "
            f"is not from it. The gain is the download: {SPARSE_FILE} is {sparse:,} bytes vs "
            f"{dense:,} dense; "
            f"model.onnx stays dense for deployment.")
    return _Saved(working, [tmp / SPARSE_FILE], base_files, extra, [note])


def _save_other(working: Any, original: Any, kind: str, cfg: PruningConfig, dataset: Any,
                tmp: Path, scratch: Path, base_files: list[Path]) -> _Saved:
    """Any other model: model.onnx (the size) plus its torch form where it has one."""
    files, extra, notes = _save_user_model(working, tmp, dataset, kind)
    if not cfg.structured:
        notes.append("Unstructured sparsity brings no speed-up by itself: dense kernels "
                     "still multiply the zeros, and a non-built-in model is saved dense.")
    if any(str(f).endswith(".onnx") for f in base_files):  # an ONNX input, timed as torch
        notes.append("Timed in torch (the input converted, and the pruned module), not in "
                     "ONNX Runtime, where the shipped model.onnx runs at another speed: "
                     "`studio compare` of a benchmark run of the input and this run times "
                     "both there, side by side.")
    if not base_files or not any(str(f).endswith(".onnx") for f in base_files):
        base_files = _baseline_onnx(original, dataset, scratch)
    return _Saved(working, files, base_files, extra, notes)


def _log_notes(log: Mapping[str, Any], cfg: PruningConfig) -> list[str]:
    """Warnings read from the pruning log: width attributes changed, fine-tune outcome."""
    notes = []
    if log.get("width_attributes_updated"):
        changed = ", ".join(f"{k} {a}→{b}" for k, (a, b) in
                            log["width_attributes_updated"].items())
        notes.append(f"Attention width attributes read by the forward were updated: "
                     f"{changed}.")
    if log.get("finetune_kept_epoch") == 0 and cfg.finetune_epochs > 0:
        notes.append("Fine-tuning did not improve validation accuracy; the pruned model "
                     "before fine-tuning (BatchNorm statistics re-estimated) was kept.")
    if log["accuracy_before_finetune"] is not None and cfg.finetune_epochs == 0:
        notes.append("No fine-tuning was run (finetune_epochs=0).")
    return notes


def _check_removed_something(original: Any, pruned: Any, method: str) -> None:
    """A structured method that removed no parameter did nothing: refused, nothing written."""
    if sum(p.numel() for p in pruned.parameters()) < sum(p.numel()
                                                          for p in original.parameters()):
        return
    raise UnsupportedModelError(
        f"Structured pruning ({method}) removed nothing from this model: it removes neurons "
        "and channels of Linear and Conv2d layers (an ONNX Dense layer, MatMul by constant "
        "weights over a [batch, features] input, is one; a MatMul over more axes is not), "
        "keeping the output layer whole, and found no other to prune. Use an unstructured "
        "method (e.g. l1-unstructured), which zeroes single weights.")


def prune(
    model_or_run: Any,
    data: Any = None,
    config: PruningConfig | Mapping[str, Any] | str | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Prune a model (module, model file or run folder) and write a measured run folder.

    Structured methods remove channels/neurons/heads; a built-in model comes back as the same
    family with the new widths (model.json + model.safetensors + model.onnx). Unstructured
    methods zero weights permanently and save them compactly (model.sparse.npz) beside a
    dense model.onnx. The input model and its run folder are never modified. ``config``: a
    PruningConfig, a mapping of its fields, or a method name; ``overrides`` replace its
    fields (``prune(run, None, "structured-l1", sparsity=0.3, out_dir=...)``).
    """
    cfg = resolve_config(config, overrides, area="pruning", cls=PruningConfig)
    cb = Callbacks.ensure(callbacks)
    method = get_method("pruning", cfg.method)
    cb.progress(0.0, "Loading the model")
    original, kind, dataset, base_files, run_parent, why, notes = _resolve(model_or_run, data)
    reason = _refusal(kind, cfg.method, why, original)
    if reason:
        raise UnsupportedModelError(reason)
    _check_fits(original, dataset)
    cfg, finetune_choice = cfg.for_model(original)  # None options chosen for this model
    working = _copy(original)
    for p in working.parameters():
        p.requires_grad_(True)
    log = run_with_batchnorm(method.fn, working, dataset, cfg, cb.sub(0.0, 1.0))
    log["finetune_options"] = finetune_choice
    layers = layer_table(original, working)
    if cfg.structured:
        _check_removed_something(original, working, cfg.method)
    with staging(out_dir, overwrite=overwrite, inputs=[model_or_run]) as tmp, \
            tempfile.TemporaryDirectory() as scratch:
        cb.progress(0.82, "Saving")
        if kind == "builtin" and cfg.structured:
            saved = _save_builtin_structured(working, original, model_or_run, dataset,
                                             tmp, Path(scratch))
        elif kind == "builtin":
            saved = _save_builtin_sparse(working, dataset, tmp, base_files)
        else:
            saved = _save_other(working, original, kind, cfg, dataset, tmp, Path(scratch),
                                base_files)
        if kind == "builtin":
            saved.extra["widths_before"] = dict(original.spec().kwargs)
        report = write_run(
            tmp, operation="prune", method=cfg.method, config=cfg.to_dict(), data=dataset,
            result_model=saved.final, result_files=saved.files, baseline_model=original,
            baseline_files=saved.base_files, seed=cfg.seed,
            warnings=notes + saved.notes + _log_notes(log, cfg), parent=parent or run_parent,
            label=f"Pruned model ({cfg.method})",
            extra={"pruning": {**log, "layers": layers, "kind": kind, **saved.extra}},
            measure_options=measure_options,
            callbacks=cb.sub(0.85, 1.0, "Measuring: ", metrics=False),
        )
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


def prune_model(model: Any, data: Any, method: str = "structured-l2", sparsity: float = 0.5,
                *, out_dir: str | Path | None = None, callbacks: Callbacks | None = None,
                measure_options: Mapping[str, Any] | None = None, **config: Any) -> RunResult:
    """Seed-document facade: ``prune_model(model, data, method=..., sparsity=..., **config)``
    forwards to ``prune`` (the run folder defaults to ``results/<run id>``)."""
    from core.artifacts import new_run_id

    cfg = PruningConfig.from_dict({"method": method, "sparsity": sparsity, **config})
    out = Path(out_dir) if out_dir is not None else Path("results") / new_run_id("prune")
    return prune(model, data, cfg, out_dir=out, callbacks=callbacks,
                 measure_options=measure_options)
