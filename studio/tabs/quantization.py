"""Tab "Quantization": INT8 / FP16 / BF16 / INT4 variants of a model, measured against FP32."""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core.artifacts import make_bundle
from core.errors import InvalidParameterError
from core.measure import speed_label
from core.quantization import is_layerwise, make_config, quantize
from core.quantization._config import (
    CALIBRATIONS,
    QUANT_TYPES,
    TORCH_BACKENDS,
    saturates_u8s8,
)
from core.registry import get_method, list_methods
from studio.charts import decision_scatter, fit_title
from studio.context import StudioContext
from studio.runner import call, first_only, variant_job
from studio.widgets import (
    INPUT_LABEL,
    follow_current,
    follow_methods,
    outcome_sentence,
    run_stop_buttons,
    stop_button,
    variant_update,
    warnings_markdown,
)

DEFAULT_TOLERANCE = 0.01
COLUMNS = ["variant", "method", "size (KB)", "p50 b1 (ms)", "p95 b1 (ms)", "p50 b64 (ms)",
           "p95 b64 (ms)", "accuracy", "Δ accuracy (pt)", "speed-up b1", "speed-up b64",
           "size ×", "note"]


def _lat(m: dict[str, Any], bs: str, q: str) -> float | None:
    entry = (m.get("latency_ms") or {}).get(bs)
    return round(entry[q], 4) if entry else None


def _r(value: Any, nd: int = 3) -> Any:
    return round(value, nd) if isinstance(value, (int, float)) else None


def _val_drop(report: dict[str, Any]) -> float | None:
    """Validation-accuracy drop, as the verb's tolerance measures it (None if not recorded)."""
    q = report.get("quantization") or {}
    fp32, quant = q.get("fp32_val_accuracy"), q.get("quantized_val_accuracy")
    return fp32 - quant if fp32 is not None and quant is not None else None


def _speed_note(ratios: dict[str, Any]) -> str:
    """The batch sizes at which the variant is not faster than FP32 (the one speed verdict)."""
    from core.measure import NO_FASTER, SLOWER, speed_verdict

    words = {SLOWER: "slower than FP32", NO_FASTER: "no faster than FP32 (within noise)"}
    parts = []
    for key, value in ratios.items():
        verdict = speed_verdict(value) if key.startswith("speedup_b") else None
        if verdict in words:
            parts.append(f"{words[verdict]} at batch {key.removeprefix('speedup_b')}")
    return "; ".join(parts)


def results_rows(reports: Sequence[tuple[str, dict[str, Any]]], parent: str | None,
                 tolerance: float) -> list[dict[str, Any]]:
    """Baseline row + one row per quantized variant of ``parent``; stars the fastest one whose
    validation-accuracy drop is within ``tolerance`` (the verb's split) and that is faster than
    FP32 at batch 64 beyond the measured noise."""
    from core.measure import FASTER, speed_verdict

    mine = [(rid, r) for rid, r in reports
            if r.get("operation") == "quantize" and r.get("parent") == parent]
    rows: list[dict[str, Any]] = []
    if mine:
        base = mine[-1][1]["baseline"] or {}
        rows.append({"variant": parent or "input", "method": "FP32 baseline",
                     "size (KB)": round(base.get("size_bytes", 0) / 1024, 1),
                     "p50 b1 (ms)": _lat(base, "1", "p50"), "p95 b1 (ms)": _lat(base, "1", "p95"),
                     "p50 b64 (ms)": _lat(base, "64", "p50"),
                     "p95 b64 (ms)": _lat(base, "64", "p95"),
                     "accuracy": _r(base.get("accuracy"), 4), "Δ accuracy (pt)": 0.0,
                     "speed-up b1": 1.0, "speed-up b64": 1.0, "size ×": 1.0,
                     "note": "measured side by side with the latest variant"})
    best, best_speed = None, 0.0
    for rid, r in mine:
        res, ratios = r["result"], r.get("ratios") or {}
        delta = ratios.get("accuracy_delta") or 0.0
        speed = ratios.get("speedup_b64") or 0.0
        rows.append({"variant": rid, "method": r.get("method"),
                     "size (KB)": round(res["size_bytes"] / 1024, 1),
                     "p50 b1 (ms)": _lat(res, "1", "p50"), "p95 b1 (ms)": _lat(res, "1", "p95"),
                     "p50 b64 (ms)": _lat(res, "64", "p50"),
                     "p95 b64 (ms)": _lat(res, "64", "p95"),
                     "accuracy": _r(res.get("accuracy"), 4),
                     "Δ accuracy (pt)": _r(100 * delta, 2),
                     "speed-up b1": _r(ratios.get("speedup_b1")),
                     "speed-up b64": _r(ratios.get("speedup_b64")),
                     "size ×": _r(ratios.get("size_reduction"), 2),
                     "note": _speed_note(ratios)})
        drop = _val_drop(r)
        if drop is not None and drop <= tolerance + 1e-12 and speed > best_speed \
                and speed_verdict(speed) == FASTER:
            best, best_speed = len(rows) - 1, speed
    if best is not None:
        note = rows[best]["note"]
        rows[best]["note"] = ("★ fastest within tolerance (validation accuracy)"
                              + (f"; {note}" if note else ""))
    return rows


def sensitivity_chart(sens: Sequence[dict[str, Any]], title: str = "") -> go.Figure:
    """Accuracy change (points) when each layer alone is quantized."""
    fig = go.Figure(go.Bar(
        x=[s["layer"] for s in sens], y=[100 * s["delta"] for s in sens],
        marker={"color": ["#d62728" if s["delta"] < 0 else "#2ca02c" for s in sens]},
        hovertemplate="%{x}<br>%{y:.2f} pt<extra></extra>"))
    fig.update_layout(title=title or "Per-layer sensitivity (validation accuracy change when "
                      "only this layer is quantized)", yaxis_title="accuracy change (pt)",
                      height=340, margin={"l": 50, "r": 20, "t": 50, "b": 90})
    return fit_title(fig)


def layer_choices(sens: Sequence[dict[str, Any]], keep: Sequence[str] | None = None
                  ) -> list[tuple[str, str]]:
    """The sensitivity chart's layers as (label, name) choices, most harmed first; the names
    already kept in float stay selectable."""
    ranked = sorted(sens, key=lambda s: s["delta"])
    choices = [(f"{s['layer']} ({100 * s['delta']:+.2f} pt)", s["layer"]) for s in ranked]
    named = {name for _, name in choices}
    return choices + [(name, name) for name in keep or () if name not in named]


def size_latency_chart(rows: Sequence[dict[str, Any]], batch: str = "64") -> Any:
    """Size on disk vs p50 latency for the baseline and each quantized variant (hover for
    the figures; the fastest within tolerance starred)."""
    named = [{**r, "name": r["method"]} for r in rows]
    pick = next((r["variant"] for r in rows if "★" in (r.get("note") or "")), None)
    return decision_scatter(named, x=f"p50 b{batch} (ms)", y="size (KB)", pick=pick,
                            x_title=f"p50 latency, batch {batch} (ms)",
                            y_title="size on disk (KB)",
                            title=f"Size vs latency (batch {batch}) — lower-left is better")


def _summary(report: dict[str, Any], run_id: str) -> str:
    q = report.get("quantization") or {}
    text = outcome_sentence(report, run_id, versus=" vs FP32")
    ort = ((report.get("references") or {}).get("onnx-fp32") or {}).get("ratios") or {}
    if ort:
        text += (f" Against ONNX Runtime FP32 of the same weights (timed in the same run): "
                 f"{speed_label(ort.get('speedup_b1'))} at batch 1, "
                 f"{speed_label(ort.get('speedup_b64'))} at batch 64.")
    if q.get("kept_float"):
        text += f"\n\nKept in float (tolerance): {', '.join(q['kept_float'])}."
    return text + warnings_markdown(report)


def _method_help(method: str) -> str:
    try:
        info = get_method("quantization", method)
    except Exception:
        return ""
    options = [n for n in info.config_cls.option_names()
               if n not in ("tolerance", "sensitivity", "seed", "calibration_size")]
    extra = f" Options: {', '.join(options)}." if options else ""
    return f"*{info.summary}.*{extra}"


def _calibration_size(value: Any) -> int | None:
    """The calibration-size box: "auto"/empty is None (the engine's default)."""
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    try:
        return int(float(value))
    except ValueError:
        raise InvalidParameterError("calibration_size", "a number of rows, or 'auto'",
                                    value) from None


def _tolerance(value: Any) -> float | None:
    """The tolerance box: "off"/empty is None, otherwise a fraction in [0, 1)."""
    if value is None or str(value).strip().lower() in ("", "off", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidParameterError("tolerance", "a number such as 0.01, or 'off'",
                                    value) from None


CPU_DEFAULT, WEIGHTS_8, WEIGHTS_7 = "cpu-default", "8-bit", "7-bit"


def weight_range_choices() -> list[tuple[str, str]]:
    """The weights-range choices; the first says which range this CPU's default resolves to."""
    from core.measure import int8_dot_text

    bits = 7 if saturates_u8s8() else 8
    s8s8 = "; S8S8 stays 8-bit" if bits == 7 else ""
    return [(f"CPU default: {bits}-bit here ({int8_dot_text()}{s8s8})", CPU_DEFAULT),
            ("8-bit", WEIGHTS_8), ("7-bit (reduce_range)", WEIGHTS_7)]


def has_weight_range(method: str) -> bool:
    """Whether the method's weights range defaults by CPU (ORT static/dynamic INT8: its
    ``reduce_range`` field defaults to None; torch INT8's is a fixed activation range)."""
    try:
        cls = get_method("quantization", method).config_cls
    except Exception:
        return False
    field = cls.__dataclass_fields__.get("reduce_range")
    return field is not None and field.default is None


def reduce_range_option(value: Any, method: str) -> bool | None:
    """The dropdown's value as the CLI's --reduce-range/--no-reduce-range: None is the CPU's
    default (and every method without a CPU-dependent weights range)."""
    options = {CPU_DEFAULT: None, WEIGHTS_8: False, WEIGHTS_7: True, None: None}
    if value not in options:
        raise InvalidParameterError("reduce_range", f"one of {[WEIGHTS_8, WEIGHTS_7]} or "
                                    f"'{CPU_DEFAULT}'", value)
    return options[value] if has_weight_range(method) else None


def weight_range_control(method: Any) -> gr.Dropdown:
    """The weights-range dropdown, shown only while ``method`` has a CPU-dependent range."""
    dropdown = gr.Dropdown(
        weight_range_choices(), value=CPU_DEFAULT, visible=has_weight_range(method.value),
        label="Weights range (ORT INT8): the CPU's default, 8-bit, or 7-bit (reduce_range: "
              "cannot saturate the uint8 x int8 kernels of CPUs without VNNI)")
    method.change(lambda name: gr.update(visible=has_weight_range(name)), [method], [dropdown],
                  api_visibility="private", show_progress="hidden")
    return dropdown


def _done(ctx: StudioContext, request: Any, result: Any, run_dir: Any, config: Any,
          keep: Any) -> tuple[Any, ...]:
    """The finished run: summary, this input's variants, sensitivity, size vs latency, bundle
    and the "Keep in float" choices (most harmed layers first)."""
    report = result.report
    reports = [(p.name, r) for p, r in ctx.reports(request)]
    tol_value = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE
    rows = results_rows(reports, report.get("parent"), tol_value)
    sens_all = (report.get("quantization") or {}).get("sensitivity") or []
    zipped = call(lambda: make_bundle(run_dir))
    return (_summary(report, run_dir.name), pd.DataFrame(rows, columns=COLUMNS),
            sensitivity_chart(sens_all) if sens_all else None, size_latency_chart(rows),
            str(zipped),
            gr.update(choices=layer_choices(sens_all, keep)) if sens_all else gr.skip())


def build_quantization_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    methods = list_methods("quantization")
    with gr.Tab("Quantization", id="quantization", elem_id="quantization-tab") as tab:
        gr.Markdown("Quantize a model of this workspace (default: the current one) to INT8, FP16, "
                    "BF16 or INT4. Each result is the real file, timed side by side with the "
                    "FP32 model; if it is slower on this CPU, you will be told.")
        with gr.Row():
            with gr.Column(scale=1):
                variant = gr.Dropdown([], label=INPUT_LABEL, allow_custom_value=True)
                method = gr.Dropdown(methods, value=methods[0], label="Method")
                method_help = gr.Markdown(_method_help(methods[0]))
                weight_range = weight_range_control(method)
                tolerance = gr.Dropdown(
                    ["off", "0.005", "0.01", "0.02", "0.05"], value="off",
                    allow_custom_value=True,
                    label="Tolerance: max accuracy drop (0.01 = 1 point); the most sensitive "
                          "layers stay in float until the drop is within it")
                keep_float = gr.Dropdown(
                    [], value=[], multiselect=True, allow_custom_value=True,
                    label="Keep in float (mixed precision by layer): pick from the sensitivity "
                          "chart's layers, most sensitive first, or type a layer name")
                run_btn, stop_btn = run_stop_buttons("Quantize")
                with gr.Accordion("More options: calibration, sensitivity, kernels",
                                  open=False):
                    calibration = gr.Radio(list(CALIBRATIONS), value="minmax", label="Calibration")
                    calib_size = gr.Dropdown(
                        ["auto", "64", "128", "256", "512", "1024"], value="auto",
                        allow_custom_value=True,
                        label="Calibration size: rows of the train split (auto: 256, or all "
                              "when fewer)")
                    per_channel = gr.Checkbox(False, label="Per-channel weights")
                    sensitivity = gr.Checkbox(True, label="Per-layer sensitivity")
                    quant_types = gr.Radio(list(QUANT_TYPES), value="U8S8",
                                           label="ORT static activation/weight types")
                    block_size = gr.Dropdown([16, 32, 64, 128, 256], value=32,
                                             label="INT4 block size")
                    backend = gr.Dropdown(list(TORCH_BACKENDS), value="x86",
                                          label="torch INT8 kernels")
                    qat_epochs = gr.Slider(1, 20, value=2, step=1, label="QAT epochs")
                    qat_lr = gr.Number(1e-3, label="QAT learning rate", minimum=1e-6, maximum=1)
            with gr.Column(scale=2):
                status = gr.Markdown("Pick a method and press Quantize.",
                                     elem_classes=["run-status"])
                table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Results (this input)",
                                     interactive=False, max_height=360)
                sens_plot = gr.Plot(label="Per-layer sensitivity")
                scatter = gr.Plot(label="Size vs latency")
                bundle = gr.File(label="Download: model file(s), report.json, model card, recipe")

        def on_select(request: gr.Request):
            return variant_update(ctx, request)

        def on_run(choice, name, calib, size, channel, tol, sens, types, block, kernels,
                   epochs, rate, keep=None, weights=CPU_DEFAULT, request: gr.Request = None):
            options = {"calibration": calib,
                       "calibration_size": call(lambda: _calibration_size(size)),
                       "per_channel": bool(channel),
                       "tolerance": call(lambda: _tolerance(tol)),
                       "sensitivity": bool(sens), "quant_types": types,
                       "block_size": int(block), "backend": kernels, "epochs": int(epochs),
                       "lr": float(rate),
                       "reduce_range": call(lambda: reduce_range_option(weights, name))}
            if call(lambda: is_layerwise(name)):
                options["exclude"] = list(keep or [])
            else:  # whole-model casts and QAT
                options.update(tolerance=None, sensitivity=False)
            config = call(lambda: make_config(name, options, strict=False))
            sens_rows: list[dict[str, Any]] = []
            for kind, payload in variant_job(ctx, request, choice, quantize, config,
                                             kind="quantize", record={"method": name}):
                if kind == "status":
                    yield first_only(payload, 6)
                elif kind == "metrics" and "sensitivity_delta" in payload:
                    sens_rows.append({"layer": payload["layer"],
                                      "delta": payload["sensitivity_delta"]})
                    yield gr.skip(), gr.skip(), sensitivity_chart(sens_rows), gr.skip(), \
                        gr.skip(), gr.skip()
                elif kind == "done":
                    yield _done(ctx, request, *payload, config, keep)

        follow_current(shell, tab, on_select, [variant])
        follow_methods(ctx, variant, method, "quantization")
        method.change(_method_help, [method], [method_help], api_visibility="private")
        event = run_btn.click(
            on_run, [variant, method, calibration, calib_size, per_channel, tolerance,
                     sensitivity, quant_types, block_size, backend, qat_epochs, qat_lr,
                     keep_float, weight_range],
            [status, table, sens_plot, scatter, bundle, keep_float], api_name="quantize",
            show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_quantize", ("quantize",))
        gr.Button("Refresh variants", size="sm").click(on_select, None, [variant],
                                                       api_name="quantize_variants")
    return tab
