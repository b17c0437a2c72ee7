"""Tab "Comparison": every variant of this session, re-measured side by side, with charts,
report exports, bundles and "save as recipe"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pandas as pd

from core.artifacts import make_bundle, new_run_id
from core.compare import COLUMNS, lineage_graph
from studio.charts import (
    comparison_charts,
    fit_title,
    named_rows,
    size_latency_scatter,
    variant_bars,
    variant_row,
)
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


def _layout() -> SimpleNamespace:
    """The tab's widgets: buttons, status, table, charts, exports and downloads."""
    w = SimpleNamespace()
    with gr.Row():
        w.refresh = gr.Button("Refresh")
        w.remeasure = gr.Button("Re-measure all", variant="primary")
        w.stop = gr.Button("Stop", variant="stop")
    w.status = gr.Markdown("", elem_classes=["run-status"])
    w.table = gr.Dataframe(pd.DataFrame(columns=["name", "variant", "accuracy", "size (KB)"]),
                           label="Variants (press Refresh)", interactive=False,
                           max_height=400)
    w.shown = gr.State({})  # the rows in the table, so a selected row marks its points
    w.scatter = gr.Plot(label="Size vs latency (select a table row to mark its point)")
    with gr.Row():
        w.acc_plot = gr.Plot(label="Accuracy vs latency")
        w.lineage_plot = gr.Plot(label="Lineage")
    w.bars = gr.Plot(label="Figures per variant")
    w.exports = gr.File(label=EXPORT_LABEL, file_count="multiple")
    with gr.Row():
        w.variant = gr.Dropdown([], label="Variant to download", scale=3,
                                allow_custom_value=True)
        w.download_btn = gr.Button("Prepare bundle (.zip)", scale=1)
        w.recipe_btn = gr.Button("Save as recipe", scale=1)
    w.bundle = gr.File(label="Bundle: model files, report.json, model card, recipe")
    w.recipe_file = gr.File(label="Recipe (replay with: studio run RECIPE.yaml --out DIR)")
    return w


def _remeasured(ctx: StudioContext, request: Any, runs: list[Path], rep: dict[str, Any],
                out: Path, note: str) -> tuple[Any, ...]:
    """The outputs of a finished re-measurement: status, table and the four charts, files."""
    names = {p.name: ctx.display_name(request, p, json_report(p)) for p in runs}
    rows = named_rows(rep["rows"], names)
    current = ctx.current(request)
    sl, al = comparison_charts(rows, current.name if current else None)
    files = [str(out / n) for n in ("report.html", "report.md", "comparison.csv",
                                    "report.json")]
    warn = "".join(f"\n- {w}" for w in rep["warnings"])
    return (f"**Re-measured** {len(rep['rows'])} variant(s) in one run "
            f"({rep['environment']['threads']} thread, {rep['environment']['cpu']}). Pareto "
            f"front: {', '.join(rep['pareto'])}.{note}{warn}",
            _display(rows), sl, al, fit_title(lineage_graph(rep["rows"])),
            variant_bars(rows), files, {"rows": rows, "remeasured": True})


def last_remeasure(ctx: StudioContext, request: Any, runs: list[Path]) -> tuple[Any, ...] | None:
    """The outputs of this workspace's newest re-measurement when it timed exactly ``runs``
    (a reload or a tab switch shows it again), else None."""
    reports = [p for p in (ctx.session_dir(request) / "comparisons").glob("compare-*/report.json")
               if not p.parent.name.endswith(".partial")]
    if not reports:
        return None
    newest = max(reports, key=lambda p: p.stat().st_mtime)
    try:
        rep = json.loads(newest.read_text())
    except (OSError, ValueError):
        return None
    timed = sorted(str(r.get("variant")) for r in rep.get("rows") or [])
    if timed != sorted(p.name for p in runs):
        return None
    return _remeasured(ctx, request, runs, rep, newest.parent, "")


def marked_points(shown: dict[str, Any], evt: gr.SelectData) -> tuple[Any, Any]:
    """The table's selected row starred in the charts (rows name their variant first)."""
    rows = (shown or {}).get("rows") or []
    name = (evt.row_value or [None])[0] if evt is not None else None
    if not rows or name is None:
        return gr.skip(), gr.skip()
    if shown.get("remeasured"):
        return comparison_charts(rows, str(name))
    return size_latency_scatter(rows, pick=str(name)), gr.skip()


def _remeasure_handler(ctx: StudioContext) -> Any:
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
        skip = (gr.skip(),) * 7
        started = time.monotonic()
        yield (f"▶ Re-measuring {len(runs)} variant(s) side by side…{note}", *skip)
        for kind, payload in stream(work):
            if kind == "progress":
                yield (progress_line(payload, started), *skip)
            elif kind == "done":
                yield _remeasured(ctx, request, runs, payload.report, out, note)

    return on_remeasure


def _download_handlers(ctx: StudioContext) -> tuple[Any, Any]:
    """(bundle of a variant, recipe that replays a variant's lineage)."""
    def on_download(choice: str, request: gr.Request) -> str:
        if not choice:
            raise gr.Error("Pick a variant first.")
        run_dir = call(lambda: ctx.find_run(request, choice))
        return str(call(lambda: make_bundle(run_dir)))

    def on_recipe(choice: str, request: gr.Request) -> str:
        from core.artifacts import shareable_recipe_yaml
        from core.recipes import recipe_from_lineage

        if not choice:
            raise gr.Error("Pick a variant first.")
        run_dir = call(lambda: ctx.find_run(request, choice))
        recipe = call(lambda: recipe_from_lineage(run_dir))
        folder = ctx.session_dir(request) / "recipes"
        folder.mkdir(exist_ok=True)
        path = folder / f"recipe-{run_dir.name}.yaml"
        path.write_text(f"# studio run {path.name} --out DIR (beside your model and data)\n"
                        + shareable_recipe_yaml(recipe.to_dict()))
        return str(path)

    return on_download, on_recipe


def build_comparison_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Comparison", id="comparison", elem_id="comparison-tab") as tab:
        gr.Markdown("Every variant of this workspace made on the current model's data set. "
                    "**Refresh** lists the figures "
                    "measured when each variant was made (against its parent); **Re-measure "
                    "all** times every variant again, side by side in one run under one "
                    "protocol, so that all ratios in the table are comparable.")
        w = _layout()
        device_ranking_box(ctx, lambda request: comparable_runs(ctx, request)[0])

        def on_refresh(request: gr.Request):
            runs, _left = comparable_runs(ctx, request)
            rows = [variant_row(p.name, rep := json_report(p),
                                name=ctx.display_name(request, p, rep)) for p in runs]
            return (pd.DataFrame(rows), size_latency_scatter(rows), variant_update(ctx, request),
                    {"rows": rows, "remeasured": False})

        def on_show(request: gr.Request):
            table, scatter, variant, shown = on_refresh(request)
            last = last_remeasure(ctx, request, comparable_runs(ctx, request)[0])
            if last is None:
                return (gr.skip(), table, scatter, *(gr.skip(),) * 4, shown, variant)
            return (*last, variant)

        listed = [w.table, w.scatter, w.variant, w.shown]
        w.refresh.click(on_refresh, None, listed, api_name="list_variants")
        tab.select(on_show, None, [w.status, w.table, w.scatter, w.acc_plot, w.lineage_plot,
                                   w.bars, w.exports, w.shown, w.variant],
                   api_visibility="private")
        event = w.remeasure.click(
            _remeasure_handler(ctx), None,
            [w.status, w.table, w.scatter, w.acc_plot, w.lineage_plot, w.bars, w.exports,
             w.shown], api_name="remeasure_all", show_progress_on=[w.status], **ctx.engine())
        stop_button(ctx, w.stop, event, w.status, "stop_remeasure", ("compare",))
        w.table.select(marked_points, [w.shown], [w.scatter, w.acc_plot],
                       api_visibility="private")
        on_download, on_recipe = _download_handlers(ctx)
        w.download_btn.click(on_download, [w.variant], [w.bundle], api_name="download_bundle")
        w.recipe_btn.click(on_recipe, [w.variant], [w.recipe_file], api_name="save_recipe")
    return tab
