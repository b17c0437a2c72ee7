"""Tab "Comparison": every variant of this session with its measured figures, and downloads."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.artifacts import make_bundle
from studio.charts import size_latency_scatter, variant_row
from studio.context import StudioContext
from studio.runner import call


def build_comparison_tab(ctx: StudioContext) -> gr.Tab:
    with gr.Tab("Comparison", id="comparison", elem_id="comparison-tab") as tab:
        gr.Markdown("Every variant made in this browser session, with the figures measured "
                    "when it was made (each against its parent, side by side in one run).")
        refresh = gr.Button("Refresh")
        table = gr.Dataframe(label="Variants", interactive=False, max_height=400)
        scatter = gr.Plot(label="Size vs latency")
        with gr.Row():
            variant = gr.Dropdown([], label="Variant to download", scale=3,
                                  allow_custom_value=True)
            download_btn = gr.Button("Prepare bundle (.zip)", scale=1)
        bundle = gr.File(label="Bundle: model files, report.json, model card, recipe")

        def on_refresh(request: gr.Request):
            rows = [variant_row(p.name, r) for p, r in ctx.reports(request)]
            choices = ctx.variant_choices(request)
            return (pd.DataFrame(rows), size_latency_scatter(rows),
                    gr.update(choices=choices, value=choices[-1] if choices else None))

        def on_download(choice: str, request: gr.Request) -> str:
            if not choice:
                raise gr.Error("Pick a variant first.")
            run_dir = call(lambda: ctx.find_run(request, choice))
            return str(call(lambda: make_bundle(run_dir)))

        refresh.click(on_refresh, None, [table, scatter, variant], api_name="list_variants")
        tab.select(on_refresh, None, [table, scatter, variant])
        download_btn.click(on_download, [variant], [bundle], api_name="download_bundle")
    return tab
