"""Tab "Pruning": structured (channels really removed) or unstructured (sparse weights) pruning,
one-shot or gradual with fine-tuning, measured side by side with the input model."""

from __future__ import annotations

from typing import Any, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core.artifacts import make_bundle
from core.pruning import ATTENTION_MODES, SCHEDULES, PruningConfig, prune
from core.registry import list_methods
from studio.charts import fit_title
from studio.context import StudioContext
from studio.runner import call, first_only, variant_job
from studio.widgets import (
    AUTO,
    INPUT_LABEL,
    auto_or,
    follow_current,
    follow_methods,
    method_summary,
    outcome_sentence,
    run_stop_buttons,
    stop_button,
    variant_update,
    warnings_markdown,
)

COLUMNS = ["model", "accuracy", "accuracy before fine-tune", "params", "non-zero params",
           "MACs", "size (KB)", "p50 b1 (ms)", "p95 b1 (ms)", "p50 b64 (ms)", "p95 b64 (ms)"]


def _lat(m: dict[str, Any], bs: str, q: str) -> float | None:
    entry = (m.get("latency_ms") or {}).get(bs)
    return round(entry[q], 4) if entry else None


def results_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Baseline vs pruned, side by side (as measured in the same run)."""
    rows = []
    before_ft = (report.get("pruning") or {}).get("accuracy_before_finetune")
    for name, key in (("input (baseline)", "baseline"), (f"pruned ({report['method']})",
                                                         "result")):
        m = report.get(key) or {}
        rows.append({
            "model": name, "accuracy": round(m.get("accuracy", float("nan")), 4),
            "accuracy before fine-tune": (round(before_ft, 4) if key == "result"
                                          and before_ft is not None else None),
            "params": m.get("params"), "non-zero params": m.get("nonzero_params"),
            "MACs": m.get("macs"), "size (KB)": round(m.get("size_bytes", 0) / 1024, 1),
            "p50 b1 (ms)": _lat(m, "1", "p50"), "p95 b1 (ms)": _lat(m, "1", "p95"),
            "p50 b64 (ms)": _lat(m, "64", "p50"), "p95 b64 (ms)": _lat(m, "64", "p95")})
    return rows


def step_curve(history: Sequence[dict[str, Any]]) -> go.Figure:
    """Validation accuracy per pruning step: right after pruning and after fine-tuning."""
    fig = go.Figure()
    steps = [h["step"] for h in history]
    fig.add_trace(go.Scatter(x=steps, y=[h.get("val_accuracy_pruned") for h in history],
                             mode="lines+markers", name="after pruning",
                             line={"dash": "dot"}))
    fig.add_trace(go.Scatter(x=steps, y=[h.get("val_accuracy") for h in history],
                             mode="lines+markers", name="after fine-tuning"))
    fig.add_trace(go.Bar(x=steps, y=[h.get("sparsity") for h in history], name="sparsity",
                         opacity=0.25, yaxis="y2"))
    fig.update_layout(title="Validation accuracy per pruning step",
                      # ticks at the steps only: an autorange's "−0.5" met the y axis's "0"
                      xaxis={"title": "step", "tickmode": "array", "tickvals": steps,
                             "range": [min(steps, default=0) - 0.5, max(steps, default=0) + 0.5]},
                      yaxis={"title": "accuracy", "range": [0, 1.02]},
                      yaxis2={"title": "sparsity", "overlaying": "y", "side": "right",
                              "range": [0, 1]},
                      height=340, margin={"l": 50, "r": 50, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fit_title(fig)


def layer_chart(layers: Sequence[dict[str, Any]], structured: bool) -> go.Figure:
    """Per layer, before vs after: width (structured) or non-zero weights (unstructured)."""
    names = [r["layer"] for r in layers]
    if structured:
        before, after = [r["width_before"] for r in layers], [r["width_after"] for r in layers]
        title, axis = "Layer widths before vs after (output channels / neurons)", "width"
    else:
        before = [r["nonzero_before"] for r in layers]
        after = [r["nonzero_after"] for r in layers]
        title, axis = "Non-zero weights per layer before vs after", "non-zero weights"
    if not layers:
        return None
    labels, details = layer_labels(layers, structured)
    fig = go.Figure([
        go.Bar(x=names, y=before, name="before", hovertemplate="%{x}: %{y:,} before"
               "<extra></extra>"),
        go.Bar(x=names, y=after, name="after", text=labels, textposition="outside",
               cliponaxis=False, hovertext=details, hoverinfo="text")])
    fig.update_layout(title={"text": title, "font": {"size": 14}, "x": 0},
                      barmode="group", yaxis_title=axis, height=380, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 90},
                      legend={"orientation": "h", "y": -0.3})
    fig.update_yaxes(nticks=6, rangemode="tozero")
    return fit_title(fig)


def layer_labels(layers: Sequence[dict[str, Any]], structured: bool
                 ) -> tuple[list[str], list[str]]:
    """Per layer, a bar label from the same numbers the bars show (width before→after, or
    the share of weights zeroed) and a hover line with the share of the layer's weights
    removed (a narrower input removes weights too, so 32→16 can remove 75 %)."""
    labels, details = [], []
    for r in layers:
        removed = f"{100 * r['sparsity']:.0f} % of its weights removed"
        if structured:
            labels.append(f"{r['width_before']}→{r['width_after']}")
        else:
            before = r["nonzero_before"] or 1
            labels.append(f"{100 * (1 - r['nonzero_after'] / before):.0f} % zeroed")
        details.append(f"{r['layer']}: width {r['width_before']}→{r['width_after']}, "
                       f"non-zero {r['nonzero_before']:,}→{r['nonzero_after']:,}; {removed}")
    return labels, details


def _summary(report: dict[str, Any], run_id: str) -> str:
    res, base = report["result"], report.get("baseline") or {}
    params = (f"params {res['params']:,} ({res['nonzero_params']:,} non-zero) vs "
              f"{base.get('params', 0):,}")
    return (outcome_sentence(report, run_id, details=params) + _finetune_note(report)
            + warnings_markdown(report))


def _finetune_note(report: dict[str, Any]) -> str:
    """What fine-tuning the engine chose for this model (when the user left it empty)."""
    options = (report.get("pruning") or {}).get("finetune_options") or {}
    chosen = options.get("chosen_for_model") or {}
    if not chosen:
        return ""
    what = ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, (int, float))
                     else f"{k.replace('_', ' ')} {v}" for k, v in chosen.items())
    return f" Fine-tune chosen for this model ({options.get('reason', '')}): {what}."


def _done(result: Any, run_dir: Any, structured: bool) -> tuple[Any, ...]:
    """The finished run: summary, per-step curve, results table, layer chart, bundle."""
    report = result.report
    info = report.get("pruning") or {}
    zipped = call(lambda: make_bundle(run_dir))
    return (_summary(report, run_dir.name), step_curve(info.get("history", [])),
            pd.DataFrame(results_rows(report), columns=COLUMNS),
            layer_chart(info.get("layers", []), structured), str(zipped))


def build_pruning_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    methods = list_methods("pruning")
    default = "structured-l2" if "structured-l2" in methods else methods[0]
    with gr.Tab("Pruning", id="pruning", elem_id="pruning-tab") as tab:
        gr.Markdown("Prune a model of this workspace (default: the current one). **Structured** "
                    "methods remove whole channels/neurons/heads: the result is a smaller plain "
                    "model that is really faster. **Unstructured** methods zero single weights: "
                    "the download shrinks, latency does not (dense kernels). Every figure is "
                    "measured side by side with the input.")
        with gr.Row():
            with gr.Column(scale=1):
                variant = gr.Dropdown([], label=INPUT_LABEL, allow_custom_value=True)
                method = gr.Dropdown(methods, value=default, label="Method")
                method_help = gr.Markdown(method_summary("pruning", default))
                # 30 % by default: on the default digits CNN (5 fine-tune epochs at 0.005)
                # 50 % cost 0.8 pt, 30 % 0.3 pt with a real speed-up (measured, one seed).
                sparsity = gr.Slider(0.05, 0.95, value=0.3, step=0.05,
                                     label="Target sparsity (fraction removed)")
                # "auto": the engine's per-model choice (a Number cannot stay empty: the
                # browser sent 0, i.e. no fine-tuning).
                epochs = gr.Dropdown([AUTO, "0", "1", "2", "3", "5", "10", "20"], value=AUTO,
                                     allow_custom_value=True, label="Fine-tune epochs after "
                                     "each step (auto: chosen per model, 5 for a small CNN)")
                run_btn, stop_btn = run_stop_buttons("Prune")
                with gr.Accordion("More options: schedule, learning rate, layers",
                                  open=False):
                    schedule = gr.Radio(list(SCHEDULES), value="oneshot", label="Schedule")
                    steps = gr.Slider(1, 10, value=3, step=1,
                                      label="Steps (gradual: cubic schedule toward the target)")
                    lr = gr.Dropdown([AUTO, "0.001", "0.002", "0.005", "0.01"], value=AUTO,
                                     allow_custom_value=True, label="Fine-tune learning rate "
                                     "(auto: chosen per model, 0.005 for a small CNN)")
                    round_to = gr.Number(0, label="Round channel counts to a multiple of "
                                         "(0 = off; structured)", minimum=0, precision=0)
                    attention = gr.Radio(list(ATTENTION_MODES), value="heads",
                                         label="ViT attention: remove whole heads or head dims")
                    ignore = gr.Textbox("", label="Layers to leave untouched (comma-separated; "
                                        "the classifier head is always kept when structured)")
            with gr.Column(scale=2):
                status = gr.Markdown("Pick a method and press Prune.", elem_classes=["run-status"])
                curve = gr.Plot(label="Accuracy per step (live)")
                table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Results",
                                     interactive=False)
                layers_plot = gr.Plot(label="Per-layer before vs after")
                bundle = gr.File(label="Download: model file(s), report.json, model card, recipe")

        def on_select(request: gr.Request):
            return variant_update(ctx, request)

        def on_run(choice, name, target, sched, n_steps, n_epochs, rate, rounding, attn, skip,
                   request: gr.Request):
            n_steps = int(n_steps) if sched == "gradual" else 1
            config = call(lambda: PruningConfig(
                method=name, sparsity=float(target), schedule=sched, steps=n_steps,
                finetune_epochs=auto_or(n_epochs, int, "finetune_epochs"),
                lr=auto_or(rate, float, "lr"),
                round_to=int(rounding) if rounding else None, attention=attn,
                ignore=tuple(s.strip() for s in (skip or "").split(",") if s.strip())))
            history: list[dict[str, Any]] = []
            for kind, payload in variant_job(ctx, request, choice, prune, config, kind="prune"):
                if kind == "status":
                    yield first_only(payload, 5)
                elif kind == "metrics" and "step" in payload and "sparsity" in payload:
                    history.append(payload)
                    yield gr.skip(), step_curve(history), gr.skip(), gr.skip(), gr.skip()
                elif kind == "done":
                    yield _done(*payload, config.structured)

        follow_current(shell, tab, on_select, [variant])
        follow_methods(ctx, variant, method, "pruning")
        method.change(lambda m: method_summary("pruning", m), [method], [method_help],
                      api_visibility="private")
        event = run_btn.click(
            on_run, [variant, method, sparsity, schedule, steps, epochs, lr, round_to,
                     attention, ignore],
            [status, curve, table, layers_plot, bundle], api_name="prune",
            show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_prune", ("prune",))
        gr.Button("Refresh variants", size="sm").click(on_select, None, [variant],
                                                       api_name="prune_variants")
    return tab
