"""Tab "Edge": the layer-wise profiler (where the time goes, the bottlenecks), operator fusion
and low-rank factorization, each run as a job and measured side by side with its input."""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr
import pandas as pd

from core.fusion import DEFAULT_PATTERNS, PATTERNS, FusionConfig, fuse
from core.lowrank import LowRankConfig, factorize
from core.profiling import profile, profile_chart, write_profile
from studio.charts import fit_title
from studio.context import StudioContext
from studio.runner import call, first_only, job_events, variant_job
from studio.widgets import (
    INPUT_LABEL,
    follow_current,
    input_note,
    outcome_sentence,
    variant_update,
    warnings_markdown,
)

LAYER_COLUMNS = ["layer", "kind", "time (ms)", "share (%)", "params", "MFLOPs", "memory (MB)",
                 "bottleneck"]
RESULT_COLUMNS = ["model", "accuracy", "params", "size (KB)", "p50 b1 (ms)", "p50 b64 (ms)"]


def layer_rows(prof: Any, threshold: float) -> pd.DataFrame:
    """Every layer, slowest first, with the bottlenecks (share ≥ threshold) marked."""
    slow = {lay.name for lay in prof.find_bottlenecks(threshold)}
    rows = [{"layer": lay.name, "kind": lay.kind, "time (ms)": round(lay.time_ms, 4),
             "share (%)": round(100 * lay.share, 1), "params": lay.params,
             "MFLOPs": None if lay.flops is None else round(lay.flops / 1e6, 3),
             "memory (MB)": round(lay.output_mb + lay.params_mb, 3),
             "bottleneck": "yes" if lay.name in slow else ""}
            for lay in sorted(prof.layers, key=lambda lay: -lay.time_ms)]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def profile_summary(prof: Any, threshold: float) -> str:
    slow = prof.find_bottlenecks(threshold)
    names = ", ".join(f"`{lay.name}` ({100 * lay.share:.0f} %)" for lay in slow[:6]) or "none"
    check = "within" if prof.within_tolerance else "**outside**"
    plain = (f"; whole model without profiling {prof.plain_total_ms:.3f} ms"
             if prof.plain_total_ms else "")
    return (f"**{prof.backend}**, batch {prof.batch_size}, {prof.threads} thread(s): forward "
            f"{prof.measured_total_ms:.3f} ms{plain}. The layers add up to "
            f"{100 * prof.coverage:.0f} % of the forward ({check} the ±"
            f"{100 * prof.tolerance:.0f} % check). Bottlenecks (≥ {100 * threshold:.0f} %): "
            f"{names}.")


def result_rows(report: dict[str, Any], label: str) -> pd.DataFrame:
    rows = []
    for name, key in (("input (baseline)", "baseline"), (label, "result")):
        m = report.get(key) or {}
        lat = m.get("latency_ms") or {}
        rows.append({"model": name, "accuracy": round(m.get("accuracy", float("nan")), 4),
                     "params": m.get("params"),
                     "size (KB)": round((m.get("size_bytes") or 0) / 1024, 1),
                     "p50 b1 (ms)": (lat.get("1") or {}).get("p50"),
                     "p50 b64 (ms)": (lat.get("64") or {}).get("p50")})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def result_summary(report: dict[str, Any], run_id: str) -> str:
    text = outcome_sentence(report, run_id, name=report["operation"])
    if "fusion" in report:
        info = report["fusion"]
        text += (f" Fused {len(info['fused'])} op(s); graph nodes {info['nodes_before']} → "
                 f"{info['nodes_after']}.")
    if "lowrank" in report:
        info = report["lowrank"]
        text += (f" Factorized {len(info['layers'])} layer(s): parameters "
                 f"{info['params_before']:,} → {info['params_after']:,}.")
    return text + warnings_markdown(report)


def _layers(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def _profile(ctx: StudioContext, request: Any, choice: str | None, batch_size: int,
             threshold: float) -> Iterator[tuple[Any, ...]]:
    """Profile the chosen variant as a recorded job: status lines, then summary, chart, table."""
    src = call(lambda: ctx.find_run(request, choice)) if choice else None
    run_dir = ctx.new_run_dir(request, "profile")
    options = {"batch_size": batch_size, "threshold": threshold}

    def work(cb):
        source = src or ctx.ensure_baseline(request, cb)
        cb.progress(0.1, "Profiling")
        prof = profile(source, batch_size=batch_size)
        write_profile(prof, run_dir, threshold=threshold,
                      model_name=getattr(source, "name", "model"))
        return prof

    record = {"input": getattr(src, "name", None), "config": options}
    for kind, payload in job_events(ctx, request, "profile", record, work,
                                    first=input_note(ctx, request, src)):
        if kind == "status":
            yield first_only(payload, 3)
        elif kind == "done":
            yield (profile_summary(payload, threshold),
                   fit_title(profile_chart(payload, threshold=threshold)),
                   layer_rows(payload, threshold))


def build_edge_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Edge", id="edge", elem_id="edge-tab") as tab:
        gr.Markdown("Where the time goes, layer by layer, and two rewrites for small devices: "
                    "**operator fusion** (BatchNorm folded into Conv/Linear, ReLU run in place) "
                    "and **low-rank factorization** (truncated SVD, then a fine-tune). Each "
                    "result is measured side by side with its input; a rewrite that is not "
                    "faster says so.")
        variant = gr.Dropdown([], label=INPUT_LABEL, allow_custom_value=True)
        with gr.Accordion("Profiler", open=True):
            with gr.Row():
                batch = gr.Number(1, label="Batch size", minimum=1, maximum=4096, precision=0)
                threshold = gr.Slider(0.01, 0.5, value=0.05, step=0.01,
                                      label="Bottleneck threshold (share of the forward)")
                prof_btn = gr.Button("Profile", variant="primary")
            prof_status = gr.Markdown("Press Profile.", elem_classes=["run-status"])
            prof_chart = gr.Plot(label="Time per layer (bottlenecks in red)")
            prof_table = gr.Dataframe(pd.DataFrame(columns=LAYER_COLUMNS), label="Layers",
                                      interactive=False)
        with gr.Accordion("Fusion and low-rank", open=True):
            with gr.Row():
                with gr.Column():
                    patterns = gr.CheckboxGroup(list(PATTERNS), value=list(DEFAULT_PATTERNS),
                                                label="Fusion patterns")
                    fuse_btn = gr.Button("Fuse")
                with gr.Column():
                    rank = gr.Slider(0.05, 1.0, value=0.5, step=0.05,
                                     label="Rank ratio (kept rank / full rank)")
                    layers = gr.Textbox("", label="Layers to factorize (comma-separated; "
                                        "empty: every Linear/Conv2d)")
                    ft_epochs = gr.Number(3, label="Fine-tune epochs after factorizing",
                                          minimum=0, maximum=200, precision=0)
                    ft_lr = gr.Number(0.005, label="Fine-tune learning rate", minimum=1e-6,
                                      maximum=1)
                    lowrank_btn = gr.Button("Factorize")
            status = gr.Markdown("", elem_classes=["run-status"])
            table = gr.Dataframe(pd.DataFrame(columns=RESULT_COLUMNS), label="Results",
                                 interactive=False)

        def on_select(request: gr.Request):
            return variant_update(ctx, request)

        def on_profile(choice, size, limit, request: gr.Request):
            yield from _profile(ctx, request, choice, int(size or 1), float(limit))

        def run_rewrite(choice, config, verb, label, request: gr.Request):
            for kind, payload in variant_job(ctx, request, choice, verb, config,
                                             kind=config.method, label=label):
                if kind == "status":
                    yield first_only(payload, 2)
                elif kind == "done":
                    result, run_dir = payload
                    yield (result_summary(result.report, run_dir.name),
                           result_rows(result.report, label))

        def on_fuse(choice, chosen, request: gr.Request):
            config = call(lambda: FusionConfig(patterns=tuple(chosen or ())))
            yield from run_rewrite(choice, config, fuse, "fuse", request)

        def on_factorize(choice, ratio, names, epochs, rate, request: gr.Request):
            config = call(lambda: LowRankConfig(
                rank_ratio=float(ratio), layers=_layers(names),
                finetune_epochs=int(epochs or 0), lr=float(rate or 0.005)))
            yield from run_rewrite(choice, config, factorize, "factorize", request)

        follow_current(shell, tab, on_select, [variant])
        prof_btn.click(on_profile, [variant, batch, threshold],
                       [prof_status, prof_chart, prof_table], api_name="profile",
                       show_progress_on=[prof_status], **ctx.engine())
        fuse_btn.click(on_fuse, [variant, patterns], [status, table], api_name="fuse",
                       show_progress_on=[status], **ctx.engine())
        lowrank_btn.click(on_factorize, [variant, rank, layers, ft_epochs, ft_lr],
                          [status, table], api_name="factorize", show_progress_on=[status],
                          **ctx.engine())
        gr.Button("Refresh variants", size="sm").click(on_select, None, [variant],
                                                       api_name="edge_variants")
    return tab
