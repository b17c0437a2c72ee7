"""Tab "Distillation": a smaller student learns from a teacher variant, next to the same student
trained on labels only; teacher, both students and the gain are measured and shown."""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core.artifacts import make_bundle
from core.distillation import DistillConfig, distill
from core.measure import speed_label
from core.registry import list_methods
from studio.context import StudioContext
from studio.runner import call, first_only, variant_job
from studio.uploads import store_data_upload
from studio.widgets import (
    follow_current,
    method_summary,
    run_stop_buttons,
    stop_button,
    variant_update,
    warnings_markdown,
)

COLUMNS = ["model", "accuracy", "macro F1", "params", "size (KB)", "p50 b1 (ms)",
           "p50 b64 (ms)"]


def _lat(m: dict[str, Any], bs: str) -> float | None:
    entry = (m.get("latency_ms") or {}).get(bs)
    return round(entry["p50"], 4) if entry else None


def results_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Teacher, distilled student and label-only student (latency: same net as distilled)."""
    info = report.get("distillation") or {}
    rows = []
    for name, m in (("teacher (baseline)", report.get("baseline") or {}),
                    (f"distilled student ({report.get('method')})", report.get("result") or {})):
        rows.append({"model": name, "accuracy": round(m.get("accuracy", float("nan")), 4),
                     "macro F1": round(m.get("f1_macro", float("nan")), 4),
                     "params": m.get("params"), "size (KB)": round(m.get("size_bytes", 0) / 1024,
                                                                   1),
                     "p50 b1 (ms)": _lat(m, "1"), "p50 b64 (ms)": _lat(m, "64")})
    lo = info.get("label_only") or {}
    rows.append({"model": "label-only student (same net, no teacher)",
                 "accuracy": round(lo.get("accuracy", float("nan")), 4),
                 "macro F1": round(lo.get("f1_macro", float("nan")), 4),
                 "params": lo.get("params"), "size (KB)": round(lo.get("size_bytes", 0) / 1024, 1),
                 "p50 b1 (ms)": None, "p50 b64 (ms)": None})
    return rows


def curves(history: Sequence[dict[str, Any]]) -> go.Figure:
    """Validation accuracy per epoch of both students."""
    fig = go.Figure()
    for tag, name in (("kd", "distilled student"), ("label-only", "label-only student")):
        rows = [h for h in history if h.get("student") == tag]
        if rows:
            fig.add_trace(go.Scatter(x=[h["epoch"] for h in rows],
                                     y=[h["val_accuracy"] for h in rows],
                                     mode="lines+markers", name=name))
    fig.update_layout(title="Validation accuracy per epoch", xaxis_title="epoch",
                      yaxis={"title": "accuracy", "range": [0, 1.02]}, height=320,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _summary(report: dict[str, Any], run_id: str) -> str:
    info, ratios = report["distillation"], report.get("ratios") or {}
    res, base = report["result"], report["baseline"]
    text = (f"**{report['method']}** `{run_id}`: distilled student **{res['accuracy']:.4f}**, "
            f"label-only student {info['label_only']['accuracy']:.4f} (same optimiser "
            f"{'steps' if info.get('budget') == 'steps' else 'epochs'}, seed and data) → gain "
            f"**{info['gain_pt']:+.2f} pt**; teacher {base['accuracy']:.4f}. Student "
            f"{res['params']:,} params ({res['params'] / max(base['params'], 1):.0%} of the "
            f"teacher's), speed-up {speed_label(ratios.get('speedup_b1'))} at batch 1 and "
            f"{speed_label(ratios.get('speedup_b64'))} at batch 64. Transfer set: "
            f"{info['transfer_set']['labelled']} labelled + "
            f"{info['transfer_set']['unlabelled']} unlabelled rows.")
    return text + warnings_markdown(report)



SAME_FAMILY = "the teacher's"


def _teachers(picker: dict[str, Any]) -> tuple[Any, Any]:
    """The teacher picker, and the same variants offered as extra teachers."""
    return picker, gr.update(choices=picker["choices"])


def _done(result: Any, run_dir: Any, history: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The finished run: summary, both students' curves, results table, bundle."""
    report = result.report
    zipped = call(lambda: make_bundle(run_dir))
    return (_summary(report, run_dir.name), curves(history),
            pd.DataFrame(results_rows(report), columns=COLUMNS), str(zipped))


def build_distillation_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    methods = list_methods("distillation")
    with gr.Tab("Distillation", id="distillation", elem_id="distillation-tab") as tab:
        gr.Markdown("Train a smaller **student** from a **teacher** model of this workspace "
                    "(default: the current model). The same student is always also trained on the "
                    "labels alone (same epochs, seed and data), so the gain from the teacher is "
                    "measured, not assumed. With few labels, the teacher labels the rest of "
                    "the training inputs (or your unlabelled file).")
        with gr.Row():
            with gr.Column(scale=1):
                teacher = gr.Dropdown([], label="Teacher (default: the current model)",
                                      allow_custom_value=True)
                method = gr.Dropdown(methods, value=methods[0], label="Method")
                method_help = gr.Markdown(method_summary("distillation", methods[0]))
                width = gr.Slider(0.1, 1.0, value=0.5, step=0.05,
                                  label="Student width (fraction of the teacher's)")
                epochs = gr.Slider(1, 50, value=10, step=1, label="Epochs (each student)")
                # Scarce labels by default: where a teacher helps (with all digits labels a
                # half-width student gained nothing; with 10 % about +2 pt, MEASURED.md).
                fraction = gr.Slider(0.05, 1.0, value=0.1, step=0.05,
                                     label="Label fraction (the rest is unlabelled: the "
                                     "teacher labels it)")
                run_btn, stop_btn = run_stop_buttons("Distil")
                with gr.Accordion("More options: temperature, alpha, depth, more teachers",
                                  open=False):
                    temperature = gr.Number(4.0, label="Temperature T (> 0)")
                    alpha = gr.Slider(0.0, 1.0, value=0.7, step=0.05,
                                      label="Alpha (weight of the teacher term)")
                    depth = gr.Slider(0.25, 1.0, value=1.0, step=0.25,
                                      label="Student depth (fraction of stages/blocks kept)")
                    extra = gr.Dropdown([], multiselect=True, label="More teachers "
                                        "(multi-teacher)", allow_custom_value=True)
                    budget = gr.Radio(["steps", "epochs"], value="steps",
                                      label="Label-only student budget: same optimiser steps "
                                      "as the distilled one, or same epochs")
                    unlabelled = gr.File(label="Unlabelled inputs: .npz (array X) or .csv",
                                         file_types=[".npz", ".csv"], height=110)
                    family = gr.Dropdown([SAME_FAMILY, "cnn", "mlp", "vit"], value=SAME_FAMILY,
                                         label="Student family (for a teacher that is not a "
                                         "built-in model, e.g. an uploaded ONNX file)")
            with gr.Column(scale=2):
                status = gr.Markdown("Pick a teacher and press Distil.",
                                     elem_classes=["run-status"])
                curve = gr.Plot(label="Both students, live")
                table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Results",
                                     interactive=False)
                bundle = gr.File(label="Download: student model files, report.json, model "
                                 "card, recipe")

        def on_select(request: gr.Request):
            return _teachers(variant_update(ctx, request))

        def on_run(choice, name, w, t, a, n_epochs, frac, d, others, upload, plan,
                   fam=SAME_FAMILY, request: gr.Request = None):
            more = tuple(str(call(lambda o=o: ctx.find_run(request, o))) for o in others or [])
            file = call(lambda: store_data_upload(upload, ctx.session_dir(request) / "uploads",
                                                  limit_mb=ctx.upload_limit_mb)) \
                if upload else None
            config = call(lambda: DistillConfig(
                method=name, width=float(w), temperature=float(t), alpha=float(a),
                epochs=int(n_epochs), budget=plan, label_fraction=float(frac), depth=float(d),
                teachers=more, unlabelled=str(file) if file else None,
                family=None if fam in (None, "", SAME_FAMILY) else fam))
            history: list[dict[str, Any]] = []
            for kind, payload in variant_job(ctx, request, choice, distill, config,
                                             kind="distill"):
                if kind == "status":
                    yield first_only(payload, 4)
                elif kind == "metrics" and "student" in payload:
                    history.append(payload)
                    yield gr.skip(), curves(history), gr.skip(), gr.skip()
                elif kind == "done":
                    yield _done(*payload, history)

        follow_current(shell, tab, on_select, [teacher, extra])
        method.change(lambda m: method_summary("distillation", m), [method], [method_help],
                      api_visibility="private")
        event = run_btn.click(
            on_run, [teacher, method, width, temperature, alpha, epochs, fraction, depth, extra,
                     unlabelled, budget, family],
            [status, curve, table, bundle], api_name="distill", show_progress_on=[status],
            **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_distill", ("distill",))
        gr.Button("Refresh variants", size="sm").click(on_select, None, [teacher, extra],
                                                       api_name="distill_variants")
    return tab
