"""The Gradio app: ``build_app(ctx)`` assembles one tab per area over the core engine."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import studio  # noqa: F401  (sets the offline environment before gradio is imported)
from studio.context import StudioContext

# (module, builder) per tab, in display order. Each builder is ``build_<tab>_tab(ctx, shell)``
# and is called inside ``gr.Blocks``/``gr.Tabs``; it creates one ``gr.Tab``.
TABS: list[tuple[str, str]] = [
    ("studio.tabs.model_data", "build_model_data_tab"),
    ("studio.tabs.quantization", "build_quantization_tab"),
    ("studio.tabs.pruning", "build_pruning_tab"),
    ("studio.tabs.distillation", "build_distillation_tab"),
    ("studio.tabs.edge", "build_edge_tab"),
    ("studio.tabs.tuning", "build_tuning_tab"),
    ("studio.tabs.comparison", "build_comparison_tab"),
    ("studio.tabs.auto", "build_auto_tab"),
    ("studio.tabs.deploy", "build_deploy_tab"),
    ("studio.tabs.jobs", "build_jobs_tab"),
    ("studio.tabs.scalability", "build_scalability_tab"),
    ("studio.tabs.continual", "build_continual_tab"),
]

TITLE = "Optimization Studio"
# A failed run's "Error" pill sits in the status box's top-right corner: make room for it
# so it never covers the headline ("Failed — …").
# A chart's label badge sits over the chart's top-left corner, where its title is drawn
# ("Size vs latency (batch 64)" was half hidden): the badge takes its own line (a line or
# two on a phone) and the chart starts below it.
STUDIO_CSS = (".run-status:has(.error) { padding-top: 2.2rem !important; }\n"
              ".block:has(.js-plotly-plot) > label[data-testid='block-label'] "
              "{ position: static; }\n"
              ".block:has(> label[data-testid='block-label']) .js-plotly-plot "
              "{ margin-top: 0.5rem; }")


def build_app(ctx: StudioContext | None = None):
    """The studio as a ``gr.Blocks`` (not launched)."""
    import gradio as gr

    from studio.shell import build_bar, wire

    ctx = ctx or StudioContext.from_env()
    ttl_s = int(ctx.session_ttl_hours * 3600)  # Gradio's upload/cache files expire too
    with gr.Blocks(title=TITLE, delete_cache=(min(3600, ttl_s), ttl_s)) as demo:
        # Before any component: each queue() call rebuilds Gradio's app and page config, and
        # here the page is still empty (after the tabs it cost ~2% of the start, measured).
        demo.queue(max_size=ctx.queue_size, default_concurrency_limit=ctx.engine_limit)
        gr.Markdown(f"## {TITLE}\nMake a model smaller and faster, and see — measured, not "
                    "estimated — what each step costs in accuracy.")
        shell = build_bar(ctx)
        with gr.Tabs() as tabs:
            for module, builder in TABS:
                getattr(importlib.import_module(module), builder)(ctx, shell=shell)
        wire(shell, demo, tabs)
        demo.load(lambda: ctx.cleanup_sessions() and None, None, None, api_visibility="private")
    demo.studio_context = ctx
    return demo


def launch_kwargs(ctx: StudioContext, host: str | None = None, port: int | None = None) -> dict:
    """Arguments for ``demo.launch``: honours GRADIO_SERVER_NAME/PORT (Hugging Face Space)."""
    import gradio as gr

    return {
        "server_name": host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        # Only session folders are served: jobs.sqlite (owners, tokens) sits beside them.
        "allowed_paths": [str(ctx.root / "sessions")],
        "max_file_size": int(ctx.upload_limit_mb * 2**20),  # refused before it is stored
        "ssr_mode": False,
        "theme": gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"]),
        "css": STUDIO_CSS,
    }


def launch(host: str | None = None, port: int | None = None, root: Path | None = None) -> None:
    """Build and serve the studio (blocking): the REST API at /api beside the UI at /."""
    from studio.api import create_app, serve

    ctx = StudioContext.from_env(root)
    kw = launch_kwargs(ctx, host, port)
    serve(create_app(ctx), kw["server_name"], kw["server_port"])
