"""Tab "Comparison": every variant of this session, re-measured side by side, with charts,
report exports, bundles and "save as recipe"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.artifacts import make_bundle, new_run_id
from core.compare import COLUMNS, lineage_graph, metric_bars
from studio.charts import comparison_charts, named_rows, size_latency_scatter, variant_row
from studio.context import StudioContext
from studio.runner import call, stream
from studio.tabs.deploy import device_ranking_box
from studio.tabs.jobs import tracked
from studio.widgets import progress_line, stop_button, variant_update

EXPORT_LABEL = "Report exports: HTML (self-contained, offline), Markdown, CSV, JSON"


def _display(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The re-measured rows with human headers and rounded figures."""
    out = []
    for r in rows:
        row = {"name": r.get("name", r.get("variant"))}
        for key, head in COLUMNS:
            v = r.get(key)
            if key == "size_bytes" and v is not None:
                head, v = "size (KB)", round(v / 1024, 1)
            elif isinstance(v, float):
                v = round(v, 4)
            row[head] = v
        out.append(row)
    return pd.DataFrame(out)


def json_report(path: Path) -> dict[str, Any]:
    return json.loads((path / "report.json").read_text())


def comparable_runs(ctx: StudioContext, request: Any) -> tuple[list[Any], list[str]]:
    """This session's variants made on the baseline's data set, and the ids left out."""
    reports = ctx.reports(request)
    if not reports:
        return [], []
    base = ctx.current(request) or reports[0][0]
    source = next(((r.get("data") or {}).get("source") for p, r in reports if p == base), None)
    keep = [p for p, r in reports if (r.get("data") or {}).get("source") == source]
    keep.sort(key=lambda p: p != base)  # the baseline first: deltas are taken against it
    left = [p.name for p, r in reports if p not in keep]
    return keep, left


def build_comparison_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Comparison", id="comparison", elem_id="comparison-tab") as tab:
        gr.Markdown("Every variant of this workspace made on the current model's data set. "
                    "**Refresh** lists the figures "
                    "measured when each variant was made (against its parent); **Re-measure "
                    "all** times every variant again, side by side in one run under one "
                    "protocol, so that all ratios in the table are comparable.")
        with gr.Row():
            refresh = gr.Button("Refresh")
            remeasure = gr.Button("Re-measure all", variant="primary")
            stop = gr.Button("Stop", variant="stop")
        status = gr.Markdown("", elem_classes=["run-status"])
        table = gr.Dataframe(pd.DataFrame(columns=["name", "variant", "accuracy", "size (KB)"]),
                             label="Variants (press Refresh)", interactive=False,
                             max_height=400)
        scatter = gr.Plot(label="Size vs latency")
        with gr.Row():
            acc_plot = gr.Plot(label="Accuracy vs latency")
            lineage_plot = gr.Plot(label="Lineage")
        bars = gr.Plot(label="Figures per variant")
        exports = gr.File(label=EXPORT_LABEL, file_count="multiple")
        with gr.Row():
            variant = gr.Dropdown([], label="Variant to download", scale=3,
                                  allow_custom_value=True)
            download_btn = gr.Button("Prepare bundle (.zip)", scale=1)
            recipe_btn = gr.Button("Save as recipe", scale=1)
        bundle = gr.File(label="Bundle: model files, report.json, model card, recipe")
        recipe_file = gr.File(label="Recipe (replay with: studio run RECIPE.yaml --out DIR)")
        device_ranking_box(ctx, lambda request: comparable_runs(ctx, request)[0])

        def on_refresh(request: gr.Request):
            runs, _left = comparable_runs(ctx, request)
            rows = [variant_row(p.name, rep := json_report(p),
                                name=ctx.display_name(request, p, rep)) for p in runs]
            return (pd.DataFrame(rows), size_latency_scatter(rows), variant_update(ctx, request))

        def on_remeasure(request: gr.Request):
            from core.compare import compare

            runs, left = comparable_runs(ctx, request)
            if not runs:
                raise gr.Error("No variants yet: train a baseline in Model & Data first.")
            out = ctx.session_dir(request) / "comparisons" / new_run_id("compare")
            note = (f" Left out (other data set): {', '.join(left)}." if left else "")
            work = tracked(ctx, request, "compare", {"variants": [p.name for p in runs]},
                           lambda cb: compare(runs, out_dir=out, callbacks=cb,
                                              measure_options=ctx.measure_options,
                                              title="Comparison of this session's variants"))
            skip = (gr.skip(),) * 6
            started = time.monotonic()
            yield (f"▶ Re-measuring {len(runs)} variant(s) side by side…{note}", *skip)
            for kind, payload in stream(work):
                if kind == "progress":
                    yield (progress_line(payload, started), *skip)
                elif kind == "done":
                    rep = payload.report
                    names = {p.name: ctx.display_name(request, p, json_report(p))
                             for p in runs}
                    rows = named_rows(rep["rows"], names)
                    current = ctx.current(request)
                    sl, al = comparison_charts(rows, current.name if current else None)
                    bar_rows = [{**r, "variant": f"{r['name']} · {r['variant'][-4:]}"}
                                for r in rows]
                    files = [str(out / n) for n in ("report.html", "report.md",
                                                    "comparison.csv", "report.json")]
                    warn = "".join(f"\n- {w}" for w in rep["warnings"])
                    yield (f"**Re-measured** {len(rep['rows'])} variant(s) in one run "
                           f"({rep['environment']['threads']} thread, "
                           f"{rep['environment']['cpu']}). Pareto front: "
                           f"{', '.join(rep['pareto'])}.{note}{warn}",
                           _display(rows), sl, al, lineage_graph(rep["rows"]),
                           metric_bars(bar_rows), files)

        def on_download(choice: str, request: gr.Request) -> str:
            if not choice:
                raise gr.Error("Pick a variant first.")
            run_dir = call(lambda: ctx.find_run(request, choice))
            return str(call(lambda: make_bundle(run_dir)))

        def on_recipe(choice: str, request: gr.Request) -> str:
            from core.recipes import recipe_from_lineage

            if not choice:
                raise gr.Error("Pick a variant first.")
            run_dir = call(lambda: ctx.find_run(request, choice))
            recipe = call(lambda: recipe_from_lineage(run_dir))
            folder = ctx.session_dir(request) / "recipes"
            folder.mkdir(exist_ok=True)
            path = folder / f"recipe-{run_dir.name}.yaml"
            path.write_text(f"# studio run {path.name} --out DIR\n" + recipe.to_yaml())
            return str(path)

        refresh.click(on_refresh, None, [table, scatter, variant], api_name="list_variants")
        tab.select(on_refresh, None, [table, scatter, variant], api_visibility="private")
        event = remeasure.click(
            on_remeasure, None, [status, table, scatter, acc_plot, lineage_plot, bars, exports],
            api_name="remeasure_all", show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop, event, status, "stop_remeasure", ("compare",))
        download_btn.click(on_download, [variant], [bundle], api_name="download_bundle")
        recipe_btn.click(on_recipe, [variant], [recipe_file], api_name="save_recipe")
    return tab
