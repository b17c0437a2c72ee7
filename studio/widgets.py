"""Small pieces the tabs share: the input-variant picker, method help, warning bullets."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.registry import get_method
from studio.context import StudioContext

RUNNING = "▶"
INPUT_LABEL = "Input model (default: the current model, shown at the top)"


AUTO = "auto"


def auto_or(value: Any, kind: type, name: str) -> Any:
    """None for "auto" (or empty): the engine chooses per model; else the number."""
    from core.errors import InvalidParameterError

    if value is None or str(value).strip().lower() in ("", AUTO):
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(name, f"'{AUTO}' or a number", value) from None


def variant_update(ctx: StudioContext, request: Any) -> dict[str, Any]:
    """A ``gr.update`` for an input-model dropdown: this workspace's variants (friendly names),
    the current model picked."""
    import gradio as gr

    current = ctx.current(request)
    return gr.update(choices=ctx.variant_choices(request),
                     value=current.name if current is not None else None)


def follow_current(shell: Any, tab: Any, fn: Any, outputs: list[Any]) -> None:
    """Refresh a tab's pickers when it is opened and whenever the current model changes."""
    tab.select(fn, None, outputs, api_visibility="private")
    if shell is not None:
        shell.on_current(fn, [], outputs)


def input_note(ctx: StudioContext, request: Any, source: Any) -> str:
    """The first status line of a run: what it starts from (and that a default baseline is
    trained first, and shown in Model & Data, when there is no model yet)."""
    if source is not None:
        return f"{RUNNING} Starting…"
    if ctx.current(request) is None:
        return (f"{RUNNING} No model yet: training the default baseline (CNN on digits) first; "
                "it becomes the current model and is shown in Model & Data…")
    return f"{RUNNING} Starting from the current model…"


def progress_line(payload: tuple[float, str], started: float) -> str:
    """A running state: the step, how far, and the time elapsed."""
    import time

    fraction, message = payload
    elapsed = time.monotonic() - started
    clock = f"{elapsed:.0f} s" if elapsed < 120 else f"{elapsed / 60:.1f} min"
    return f"{RUNNING} {message} — {100 * fraction:.0f} % · {clock} elapsed"


def stop_button(ctx: StudioContext, button: Any, event: Any, status: Any, api_name: str,
                kinds: tuple[str, ...],
                text: str = "nothing was saved for this run; your previous results are "
                            "unchanged.", previous: Any = None) -> Any:
    """Stop ``event`` and say so in ``status`` ("Stopped — …"). The workspace's running jobs
    of ``kinds`` are cancelled on the server: in Gradio 6.31 (seen in Chromium here) the
    page's own cancel, and any queued event or one that reads the run's status, did not
    reach the server while a long streaming run was going, so Stop takes no input and skips
    the queue. ``previous(request)`` (optional) is Markdown shown under the headline: what
    the user still has. Returns the click event (to chain a restore of other outputs)."""
    from studio.tabs.jobs import manager, owner

    def stopped(request: gr.Request) -> Any:
        who = owner(ctx, request)
        running = [j for j in manager(ctx).list(who, status="running", limit=20)
                   if j.kind in kinds]
        for job in running:
            manager(ctx).cancel(job.id, who)
        if not running:
            return gr.skip()
        below = previous(request) if previous is not None else ""
        return f"**Stopped** — {text}" + (f"\n\n{below}" if below else "")

    return button.click(stopped, None, [status], api_name=api_name, queue=False,
                        cancels=event if isinstance(event, list) else [event])


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


def outcome_sentence(report: dict[str, Any], run_id: str, *, name: str | None = None,
                     details: str = "", versus: str = "") -> str:
    """The sentence a variant tab leads with: ``**name** `run`: accuracy **a** (Δ d pt);
    [details; ]S KB on disk (r× smaller); speed-up s1 at batch 1 and s64 at batch 64[ vs …].``
    ``name`` defaults to the report's method; a figure the report lacks reads "not measured"
    (never 0), and a larger file says "larger"."""
    from core.measure import speed_label

    res, ratios = report["result"], report.get("ratios") or {}
    delta, size = ratios.get("accuracy_delta"), ratios.get("size_reduction")
    change = "Δ not measured" if delta is None else f"Δ {100 * delta:+.2f} pt"
    if not size:
        bigger = "size ratio not measured"
    else:
        bigger = f"{size:.2f}× smaller" if size >= 1 else f"{1 / size:.2f}× larger"
    kb = "size not measured" if res.get("size_bytes") is None else \
        f"{res['size_bytes'] / 1024:.1f} KB on disk"
    return (f"**{name or report['method']}** `{run_id}`: accuracy **{res['accuracy']:.4f}** "
            f"({change}); {details + '; ' if details else ''}{kb} ({bigger}); speed-up "
            f"{speed_label(ratios.get('speedup_b1'))} at batch 1 and "
            f"{speed_label(ratios.get('speedup_b64'))} at batch 64{versus}.")


def run_stop_buttons(label: str, stop_label: str = "Stop") -> tuple[Any, Any]:
    """A row with the tab's primary action and its Stop button (create inside a layout)."""
    import gradio as gr

    with gr.Row():
        return gr.Button(label, variant="primary"), gr.Button(stop_label, variant="stop")


def run_kind(folder: Any) -> str:
    """The model kind of a run folder, read from its files without loading it (the order of
    ``core.artifacts.load_model``): builtin, onnx, torchscript or export."""
    from pathlib import Path

    folder = Path(folder)
    if (folder / "model.json").is_file() and any(
            (folder / n).is_file() for n in ("model.safetensors", "model.sparse.npz")):
        return "builtin"
    for name, kind in (("model.onnx", "onnx"), ("model.pt", "torchscript"),
                       ("model.pt2", "export")):
        if (folder / name).is_file():
            return kind
    return "builtin"


def applicable(area: str, kind: str) -> list[str]:
    """The registered methods of ``area`` that apply to a model of ``kind``."""
    from core.registry import list_methods

    if area == "quantization":
        from core.quantization import applicable_methods

        # None apply to a .pt2 program: all stay listed, and the run's refusal says to
        # export the model to ONNX (an empty picker would explain nothing).
        return applicable_methods(kind) or list(list_methods(area))
    if area == "pruning" and kind in ("torchscript", "export"):
        from core.pruning import STRUCTURED  # structured pruning rewrites Python modules

        return [m for m in list_methods(area) if m not in STRUCTURED]
    return list(list_methods(area))


def follow_methods(ctx: StudioContext, variant: Any, method: Any, area: str) -> None:
    """Offer in ``method`` only the methods that apply to the picked (or current) model."""
    def on_variant(choice: Any, chosen: str, request: gr.Request):
        try:
            folder = ctx.find_run(request, choice) if choice else ctx.current(request)
        except Exception:  # an unknown id is refused with its message when the run starts
            return gr.skip()
        names = applicable(area, run_kind(folder) if folder is not None else "builtin")
        return gr.update(choices=names, value=chosen if chosen in names else names[0])

    variant.change(on_variant, [variant, method], [method], api_visibility="private",
                   show_progress="hidden")
