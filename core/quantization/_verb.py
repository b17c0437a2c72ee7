"""The ``quantize`` verb: quantize, check accuracy layer by layer, measure, write the run."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from core.artifacts._onnx import move_onnx, shared_onnx_reads, strip_debug_metadata
from core.artifacts._trust import record_studio_made
from core.callbacks import Callbacks
from core.errors import InvalidParameterError, UnsupportedModelError, check_range
from core.inputs import ModelInput, open_input
from core.quantization._base import AREA, MethodSpec, Source, method_spec
from core.quantization._check import check_applies, require_quantized
from core.quantization._config import QuantizationConfig
from core.registry import resolve_config

if TYPE_CHECKING:
    from core.runs import RunResult

__all__ = ["is_layerwise", "load_artifact", "make_config", "quantize", "quantize_model"]


def make_config(method: str, options: Mapping[str, Any] | None = None, *,
                strict: bool = True) -> QuantizationConfig:
    """The config of a registered method from flat options.

    With ``strict`` an option the method does not have is refused (CLI, Python API);
    otherwise it is dropped (the UI sends every widget's value).
    """
    from core.registry import get_method

    info = get_method(AREA, method)
    cls = info.config_cls
    names = [*cls.option_names(), "method", "schema_version"]  # a to_dict() comes back too
    values = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = sorted(set(values) - set(names))
    if unknown and strict:
        raise InvalidParameterError(unknown[0], f"an option of '{method}' (its options: "
                                    f"{names})", values[unknown[0]])
    return cls.from_dict({k: v for k, v in values.items() if k in names})


def is_layerwise(method: str) -> bool:
    """Whether a method quantizes layer by layer (so sensitivity and tolerance apply)."""
    return method_spec(method).layerwise


def load_artifact(path: str | Path, *, threads: int = 1, output_name: str | None = None,
                  compile_for: tuple[int, ...] | None = None,
                  input_shape: tuple[int, ...] | None = None,
                  compile_threads: int | tuple[int, ...] | None = None) -> Any:
    """The quantized artifact ready to run: an ORT session or the ``.pt2`` program's module.

    With ``compile_for`` (batch sizes) and ``input_shape`` the program is compiled by
    ``torch.compile`` (inductor, freezing) at those batch sizes, each compile timed
    (``.compile_s``) at each of ``compile_threads`` (inductor fixes the count it compiles for);
    ``.compile_error`` says why it runs uncompiled if inductor cannot.
    """
    path = Path(path)
    if path.suffix == ".onnx":
        from core.measure import ort_session

        return ort_session(path, threads=threads, output_name=output_name)
    from core.artifacts import load_model

    module = load_model(path).model  # the studio's own file (recorded), or trusted
    if not compile_for or path.suffix != ".pt2":
        return module
    from core.quantization._pt2e import compile_program

    return compile_program(module, input_shape=tuple(input_shape or ()),
                           batch_sizes=compile_for, threads=compile_threads or threads)


def _val_split(data: Any) -> str:
    return "val" if len(data.y_val) else "train"


def _accuracy(*models: Any, data: Any) -> list[float]:
    """Validation accuracy of each model (ONNX Runtime sessions side by side)."""
    from core.measure import metrics_from_logits, predict_many

    X, y = data.split(_val_split(data))
    return [metrics_from_logits(logits, y).accuracy for logits in predict_many(list(models), X)]


def _attempt(spec: MethodSpec, source: Source, config: QuantizationConfig, data: Any, *,
             include: list[str] | None, exclude: list[str], cb: Callbacks,
             fp32: Any = None) -> tuple[Any, float, ...]:
    """Quantize into scratch and return (Quantized, validation accuracy of the artifact), and
    ``fp32``'s validation accuracy last when given (the two scored side by side)."""
    out = source.scratch / f"attempt-{uuid.uuid4().hex[:8]}{Path(spec.artifact).suffix}"
    q = spec.run(source, config, out, include=include, exclude=exclude, callbacks=cb)
    if Path(q.path).suffix == ".onnx":  # the exporter's stack traces are not deployed
        q.info["debug_metadata_bytes_removed"] = strip_debug_metadata(q.path)
    record_studio_made([Path(q.path)])  # written here: it loads back without the opt-in
    artifact = load_artifact(q.path, output_name=source.output_name)
    return (q, *_accuracy(artifact, *([fp32] if fp32 is not None else []), data=data))


def _open_input(model: Any, data: Any, output_name: str | None = None) -> ModelInput:
    """The input opened by core.inputs' rules; a quantized run is refused (its FP32 parent
    is what to quantize)."""
    inp = open_input(model, data, output_name=output_name)
    report = inp.report or {}
    if report.get("operation") == "quantize":
        raise UnsupportedModelError(
            f"'{inp.run_id}' is already quantized ({report.get('method')}). Quantize "
            f"its FP32 parent '{report.get('parent')}' instead.")
    return inp


def _torch_form(fp32: Any, inp: ModelInput, method: str, warnings: list[str]) -> Any:
    """The torch module a method works on: the input itself, none for an ONNX input to an
    ort-* method, or the ONNX model converted for a torch-* method (outputs verified)."""
    from core.artifacts import onnx_to_torch

    if type(fp32).__name__ != "InferenceSession":
        return fp32
    if method.startswith("ort-"):
        return None
    module = onnx_to_torch(inp.onnx_file, output_name=inp.output_name)
    warnings.append("The ONNX model was converted to a torch module (onnx2torch; outputs "
                    "checked against ONNX Runtime) for this torch method; exporters fold "
                    "BatchNorm into the convolutions, so none is left to train.")
    return module


DEFAULT_CALIBRATION_SIZE = 256


def _calibration_size(cfg: QuantizationConfig, n_train: int) -> QuantizationConfig:
    """Resolve the default calibration size; refuse one outside [1, train rows]."""
    if cfg.calibration_size is None:
        return cfg.replace(calibration_size=min(DEFAULT_CALIBRATION_SIZE, n_train))
    if cfg.uses_calibration:
        check_range("calibration_size", cfg.calibration_size, low=1, high=n_train, kind=int)
    return cfg


def _named_float_layers(spec: Any, source: Any, cfg: Any) -> list[str]:
    """The layers the user named to keep in float (``exclude``), checked against the model."""
    if not cfg.exclude:
        return []
    layers = spec.layers(source, cfg)
    kept: list[str] = []
    for name in cfg.exclude:  # a layer's own name, or its module's ("features.0", "fc_final")
        found = [layer for layer in layers
                 if name in (layer, layer.rstrip("/").split("/")[-2:][0])]
        if not found:
            raise InvalidParameterError("exclude", f"names of this model's quantizable layers "
                                        f"{layers}", name)
        kept += [layer for layer in found if layer not in kept]
    return kept


@shared_onnx_reads()  # the input and each attempt are parsed once, however often read
def quantize(
    model_or_run: Any,
    data: Any = None,
    config: QuantizationConfig | Mapping[str, Any] | str | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    output_name: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Quantize a model (nn.Module or run folder) and write a measured run folder.

    The baseline is the FP32 input model; the result is the quantized artifact itself
    (``model.onnx`` for ort-* methods, a ``torch.export`` ``model.pt2`` for torch-* methods,
    INT8 ones compiled by ``torch.compile`` unless ``compile=False``), loaded back from disk
    and timed side by side with the baseline. With ``config.tolerance`` the
    most sensitive layers stay in float until the validation accuracy drop is within it.
    ``output_name`` names the class-scores output of a several-output ONNX model file.
    ``config``: a method's config, a mapping of its fields with its ``method`` (a
    ``to_dict()``) or a method name; ``overrides`` replace its fields (``method=`` too).
    """
    from core.artifacts import staging, write_report, write_run
    from core.runs import RunResult

    cfg = resolve_config(config, overrides, area=AREA)
    spec = method_spec(cfg)  # dispatched on the config's type
    cb = Callbacks.ensure(callbacks)
    inp = _open_input(model_or_run, data, output_name)
    check_applies(cfg.method, inp.kind)  # before any work: one clear refusal
    fp32, data, baseline_files, input_id, onnx_in = (inp.model, inp.data, inp.files,
                                                     inp.run_id, inp.onnx_file)
    cfg = _calibration_size(cfg, len(data.y_train))
    if (cfg.tolerance is not None or cfg.sensitivity) and not spec.layerwise:
        raise InvalidParameterError("tolerance", f"unset for '{cfg.method}' (it has no per-layer "
                                    "form)", cfg.tolerance)
    is_onnx = type(fp32).__name__ == "InferenceSession"
    warnings: list[str] = list(inp.notes)
    with tempfile.TemporaryDirectory(prefix="studio-quant-") as scratch_dir, \
            staging(out_dir, overwrite=overwrite, inputs=[model_or_run]) as tmp:
        scratch = Path(scratch_dir)
        if is_onnx and onnx_in is None:
            raise UnsupportedModelError("Pass an ONNX model as a file or run folder path, "
                                        "not as an InferenceSession.")
        source = Source(data=data, scratch=scratch, onnx_file=onnx_in,
                        output_name=inp.output_name,
                        torch_model=_torch_form(fp32, inp, cfg.method, warnings))
        cb.progress(0.0, f"Preparing {cfg.method}")
        extra: dict[str, Any] = {"val_split": _val_split(data)}
        q, kept = _chosen_attempt(spec, source, cfg, data, fp32, cb, extra, warnings)
        extra["evidence"] = require_quantized(q.path, cfg.method, kept_float=kept)
        extra.update(**q.info)
        if "parity" in source.cache:
            extra["fp32_onnx_parity_max_abs_diff"] = source.cache["parity"]
        warnings += q.warnings
        if spec.artifact.endswith(".pt2"):
            warnings.append(f"{cfg.method} has no ONNX form: the artifact is a torch.export "
                            "program (model.pt2), to be run with PyTorch.")
        artifact = tmp / spec.artifact
        result_files = move_onnx(q.path, artifact) if artifact.suffix == ".onnx" else \
            [q.path.replace(artifact)]
        _write_meta(tmp, data, fp32, cfg, output_name=inp.output_name)
        result = load_artifact(artifact, threads=int((measure_options or {}).get("threads", 1)),
                               output_name=inp.output_name, **_compile_options(
                                   cfg, data, measure_options, cb))
        _score_compiled(result, data, extra, warnings)
        cb.progress(0.8, "Measuring baseline and result side by side")
        # An ORT variant is also timed against ORT FP32 of the same weights: the runtime
        # alone is often most of the speed-up, and INT8 can lose to it (no VNNI).
        fp32_ort = source.fp32_onnx() if cfg.method.startswith("ort-") and not is_onnx \
            else None
        references = {"onnx-fp32": ("ONNX Runtime FP32 of the same weights", str(fp32_ort),
                                    [fp32_ort])} if fp32_ort is not None else None
        report = write_run(
            tmp, operation="quantize", method=cfg.method, config=cfg.to_dict(), data=data,
            result_model=result, result_files=result_files, baseline_model=fp32,
            baseline_files=baseline_files, seed=cfg.seed, warnings=warnings,
            parent=parent or input_id, extra={"quantization": extra, **_onnx_entry(inp)},
            label=f"The {cfg.method} model", measure_options=measure_options,
            callbacks=cb.sub(0.8, 1.0), references=references,
        )
        if _amend(report, q.info, cfg) | _program_figures(report, q.info, result) | \
                _larger_file(report, cfg.method) | _saved_by_metadata(report, q.info, cfg.method):
            write_report(tmp, report)
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


def _chosen_attempt(spec: MethodSpec, source: Source, cfg: QuantizationConfig, data: Any,
                    fp32: Any, cb: Callbacks, extra: dict[str, Any], warnings: list[str]
                    ) -> tuple[Any, list[str]]:
    """The attempt to ship and the layers it keeps in float: every layer quantized but the
    named ones; with a tolerance, the most sensitive layers kept in float until the validation
    drop is within it. The validation scores (and the searches' steps) go to ``extra``."""
    layerwise = cfg.sensitivity or cfg.tolerance is not None
    if layerwise:  # the per-layer searches compare with it; else scored with the result
        fp32_val = extra["fp32_val_accuracy"] = _accuracy(fp32, data=data)[0]
        extra["sensitivity"] = _sensitivity(spec, source, cfg, data, fp32_val, cb)
    kept = _named_float_layers(spec, source, cfg)
    lo = 0.5 if layerwise else 0.05
    q, q_val, *fp32_scored = _attempt(spec, source, cfg, data, include=None,
                                      exclude=list(kept), cb=cb.sub(lo, lo + 0.1),
                                      fp32=None if layerwise else fp32)
    fp32_val = extra.setdefault("fp32_val_accuracy", (fp32_scored or [None])[0])
    if cfg.tolerance is not None:
        q, q_val = _within_tolerance(spec, source, cfg, data, cb, fp32_val=fp32_val,
                                     sens=extra["sensitivity"], kept=kept, first=(q, q_val),
                                     extra=extra, warnings=warnings)
    extra.update(quantized_val_accuracy=q_val, kept_float=kept)
    return q, kept


def _sensitivity(spec: MethodSpec, source: Source, cfg: QuantizationConfig, data: Any,
                 fp32_val: float, cb: Callbacks) -> list[dict[str, Any]]:
    """The validation accuracy with one layer quantized at a time, per layer."""
    layers = spec.layers(source, cfg)
    sens: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        sub = cb.sub(0.05 + 0.45 * i / max(len(layers), 1),
                     0.05 + 0.45 * (i + 1) / max(len(layers), 1),
                     f"Sensitivity {i + 1}/{len(layers)} ({layer}): ")
        _, acc = _attempt(spec, source, cfg, data, include=[layer], exclude=[], cb=sub)
        sens.append({"layer": layer, "accuracy": acc, "delta": acc - fp32_val})
        cb.metrics({"layer": layer, "sensitivity_delta": acc - fp32_val})
    return sens


def _within_tolerance(spec: MethodSpec, source: Source, cfg: QuantizationConfig, data: Any,
                      cb: Callbacks, *, fp32_val: float, sens: list[dict[str, Any]],
                      kept: list[str], first: tuple[Any, float], extra: dict[str, Any],
                      warnings: list[str]) -> tuple[Any, float]:
    """Keep the most sensitive layers in float (adding to ``kept``) until the validation
    drop is within ``cfg.tolerance``; records the steps in ``extra``, says so in
    ``warnings``; returns the last attempt and its accuracy."""
    q, q_val = first
    steps = [{"kept_float": list(kept), "val_accuracy": q_val, "drop": fp32_val - q_val}]
    order = [s["layer"] for s in sorted(sens, key=lambda s: s["delta"])
             if s["layer"] not in kept]
    while fp32_val - q_val > cfg.tolerance + 1e-12 and order:
        kept.append(order.pop(0))
        cb.progress(min(0.6 + 0.02 * len(kept), 0.75),
                    f"Drop {fp32_val - q_val:.4f} > tolerance: {kept[-1]} stays float")
        q, q_val = _attempt(spec, source, cfg, data, include=None, exclude=kept,
                            cb=cb.sub(0.6, 0.75))
        steps.append({"kept_float": list(kept), "val_accuracy": q_val,
                      "drop": fp32_val - q_val})
    met = fp32_val - q_val <= cfg.tolerance + 1e-12
    extra["tolerance"] = {"tolerance": cfg.tolerance, "met": met, "kept_float": kept,
                          "steps": steps}
    if kept:
        warnings.append(f"Kept {len(kept)} layer(s) in float to stay within the "
                        f"tolerance {cfg.tolerance}: {', '.join(kept)}.")
    if not met:
        warnings.append(f"The validation accuracy drop {fp32_val - q_val:.4f} is above "
                        f"the tolerance {cfg.tolerance} even with every layer in float.")
    return q, q_val


def _larger_file(report: dict[str, Any], method: str) -> bool:
    """Warn when an ONNX Runtime method's file came out larger than the baseline's (a tiny
    EfficientNet-style export: 112,098 vs 66,529 bytes at static INT8)."""
    base = (report.get("baseline") or {}).get("size_bytes")
    size = (report.get("result") or {}).get("size_bytes")
    if not method.startswith("ort-") or not base or not size or size <= base:
        return False
    report["warnings"].append(
        f"The {method} file is {size / base:.2f}× larger than the baseline's ({size:,} vs "
        f"{base:,} bytes): what the method adds (quantize/dequantize or cast nodes, "
        "scales, names) outweighs what its smaller weights save on a model this small.")
    return True


def _saved_by_metadata(report: dict[str, Any], info: Mapping[str, Any], method: str) -> bool:
    """Warn when a quarter or more of the bytes an ONNX result saves are the exporter's debug
    records the studio dropped, not the method (ort-int4 on a ResNet-style export: 52,172 of
    53,011 bytes, the convolutions left FP32)."""
    base = (report.get("baseline") or {}).get("size_bytes")
    size = (report.get("result") or {}).get("size_bytes")
    removed = info.get("debug_metadata_bytes_removed") or 0
    if not base or not size or not removed or size >= base or removed < (base - size) / 4:
        return False
    saved = base - size
    report["warnings"].append(
        f"{removed:,} of the {saved:,} bytes the {method} file saves are the exporter's debug "
        f"records (stack traces, module paths) the studio dropped from its graph, which the "
        f"baseline file still holds: the method's own share of size_reduction is smaller.")
    return True


def _amend(report: dict[str, Any], info: Mapping[str, Any], cfg: QuantizationConfig) -> bool:
    """Add what measure_many cannot know: weight counts it could not read, the INT8 ISA note."""
    changed = False
    res = report.get("result") or {}
    if "params" in info and not res.get("params"):
        res["params"], res["nonzero_params"] = info["params"], info["nonzero_params"]
        res.setdefault("extra", {})["params_counted_from"] = (
            "the quantized module before it was saved")
        changed = True
    from core.measure import FASTER, int8_dot_product, int8_dot_text, isa_text

    not_faster = [v for v in (report.get("speed_verdicts") or {}).values()
                  if v is not None and v != FASTER]
    if not_faster and "int8" in cfg.method and not int8_dot_product():
        report["warnings"].append(
            f"INT8 kernels get most of their speed from INT8 dot-product instructions, and "
            f"{int8_dot_text()}; ISA: {isa_text()}.")
        changed = True
    return changed


COMPILE_ENV = "STUDIO_TORCH_COMPILE"  # "0": torch INT8 measured uncompiled by default (tests)


def _score_compiled(result: Any, data: Any, extra: dict[str, Any], warnings: list[str]) -> None:
    """A compiled INT8 program runs other kernels than the uncompiled graph that the
    validation score (and any tolerance search) judged: the compiled program's own score is
    the one recorded (the graph's kept beside it), and a gap over a point is said."""
    if not getattr(result, "compile_s", None):
        return
    graph = extra["graph_val_accuracy"] = extra["quantized_val_accuracy"]
    compiled = extra["quantized_val_accuracy"] = _accuracy(result, data=data)[0]
    if abs(compiled - graph) > 0.01:
        warnings.append(
            f"Compiled, the INT8 program scores {compiled:.3f} on the validation rows, the "
            f"uncompiled graph that the per-layer choices judged {graph:.3f} (FP32 "
            f"{extra['fp32_val_accuracy']:.3f}): its kernels compute differently.")


def _compile_options(cfg: QuantizationConfig, data: Any, measure_options: Any,
                     cb: Callbacks) -> dict[str, Any]:
    """Compile torch INT8 programs for the measured batch sizes (how they are fast)."""
    import os

    wanted = getattr(cfg, "compile", False)
    if wanted is None:
        wanted = os.environ.get(COMPILE_ENV, "1").strip() != "0"
    if not wanted:
        return {}
    from core.measure._target import resolve_target

    opts = dict(measure_options or {})
    target = resolve_target(batch_sizes=opts.get("batch_sizes"), threads=opts.get("threads"))
    sizes = tuple(target.batch_sizes)
    cb.progress(0.78, f"Compiling the INT8 program (torch.compile, batch {sizes})")
    return {"compile_for": sizes, "input_shape": tuple(data.input_shape),
            "compile_threads": tuple(target.thread_counts)}


def _program_figures(report: dict[str, Any], info: Mapping[str, Any], result: Any) -> bool:
    """A .pt2 result: weights counted from the program; compile time apart from latency."""
    from core.quantization._pt2e import HOW_TO_RUN

    res = report.get("result") or {}
    if "pt2e" not in info and "dtype" not in info:
        return False
    if "params" in info:
        res["params"], res["nonzero_params"] = info["params"], info["nonzero_params"]
        res.setdefault("extra", {})["params_counted_from"] = (
            "the saved torch.export program's weight tensors (INT8 and float)")
    if "pt2e" not in info:
        return True
    compiled = getattr(result, "compiled", False)
    entry = {"compiled": compiled, "backend": "inductor", "freezing": True,
             "seconds_by_batch": dict(getattr(result, "compile_s", {})),
             # calls no compiled graph fitted (run uncompiled): 0 when every timing was warm
             "uncompiled_calls": getattr(result, "uncompiled_calls", 0),
             "how_to_run": HOW_TO_RUN}
    res["compile_s"] = round(sum(entry["seconds_by_batch"].values()), 3) if compiled else None
    report.setdefault("quantization", {})["compile"] = entry
    error = getattr(result, "compile_error", None)
    if error is not None:
        entry["error"] = error
        report["warnings"].append(
            f"torch.compile was not available here ({error}); the INT8 program was measured "
            "uncompiled, which is much slower than it runs compiled (often slower than FP32).")
    elif not compiled:
        report["warnings"].append(
            "The INT8 program was measured uncompiled (compile=False); compiled with "
            "torch.compile (inductor) it is much faster.")
    return True


def _onnx_entry(inp: ModelInput) -> dict[str, Any]:
    """report.json's "onnx" block for an ONNX input (scored output, batch handling)."""
    if inp.kind != "onnx":
        return {}
    from core.artifacts._onnx import io_entry

    return {"onnx": io_entry({"output_name": inp.output_name, **inp.meta})}


def _write_meta(folder: Path, data: Any, fp32: Any, cfg: QuantizationConfig, *,
                output_name: str | None = None) -> None:
    """model.json: what the artifact expects (shape, classes, preprocessing) and came from."""
    meta: dict[str, Any] = {
        "input_shape": list(data.input_shape), "classes": data.class_names,
        "preprocessing": data.preprocessing, "data": data.spec.to_dict(),
        "quantization": {"method": cfg.method, "config": cfg.to_dict()},
    }
    if output_name is not None:
        meta["output_name"] = output_name  # the scores output of a several-output model
    if hasattr(fp32, "spec"):
        meta["source_model"] = fp32.spec().to_dict()
    (folder / "model.json").write_text(json.dumps(meta, indent=2))


def quantize_model(model: Any, data: Any, method: str = "ort-static-int8", *,
                   out_dir: str | Path | None = None, callbacks: Callbacks | None = None,
                   measure_options: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """Seed-document facade: ``quantize_model(model, data, method=..., **options)``."""
    from core.artifacts import new_run_id

    config = make_config(method, options)
    out = Path(out_dir) if out_dir is not None else Path("results") / new_run_id("quantize")
    return quantize(model, data, config, out_dir=out, callbacks=callbacks,
                    measure_options=measure_options)
