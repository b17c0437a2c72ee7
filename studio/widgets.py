"""Small pieces the tabs share: the input-variant picker, method help, warning bullets."""

from __future__ import annotations

from typing import Any

from core.registry import get_method
from studio.context import StudioContext


def variant_update(ctx: StudioContext, request: Any) -> dict[str, Any]:
    """A ``gr.update`` for an input-variant dropdown: this session's variants, baseline picked."""
    import gradio as gr

    choices = ctx.variant_choices(request)
    base = ctx.baseline(request)
    value = next((c for c in choices if base is not None and c.startswith(base.name)), None)
    return gr.update(choices=choices, value=value)


def method_summary(area: str, method: str) -> str:
    """The registered method's one-line summary, in italics ("" when unknown)."""
    try:
        return f"*{get_method(area, method).summary}*"
    except Exception:
        return ""


def warnings_markdown(report: dict[str, Any]) -> str:
    """The report's warnings as Markdown bullets, preceded by a blank line ("" when none)."""
    if not report.get("warnings"):
        return ""
    return "\n\n" + "\n".join(f"- ⚠ {w}" for w in report["warnings"])


def run_stop_buttons(label: str, stop_label: str = "Stop") -> tuple[Any, Any]:
    """A row with the tab's primary action and its Stop button (create inside a layout)."""
    import gradio as gr

    with gr.Row():
        return gr.Button(label, variant="primary"), gr.Button(stop_label, variant="stop")
