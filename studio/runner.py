"""Run engine work in a thread and stream its progress to a generator handler."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

from core.callbacks import Callbacks
from core.errors import CancelledError, StudioError


def stream(work: Callable[[Callbacks], Any], *, poll_s: float = 0.25
           ) -> Iterator[tuple[str, Any]]:
    """Run ``work(callbacks)`` in a thread; yield ``("progress", (fraction, message))``,
    ``("metrics", dict)`` and finally ``("done", result)``.

    If the consumer stops (Gradio's Stop cancels a generator at its next yield), the
    generator is closed and the cancel token stops the engine at its next check.
    Engine errors are raised here as ``gr.Error`` with the engine's message.
    """
    import gradio as gr

    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    cb = Callbacks(on_progress=lambda f, m: events.put(("progress", (f, m))),
                   on_metrics=lambda d: events.put(("metrics", d)))
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = work(cb)
        except BaseException as exc:  # handed to the consumer below
            outcome["error"] = exc
        finally:
            events.put(("end", None))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, payload = events.get(timeout=poll_s)
            except queue.Empty:
                yield ("tick", None)
                continue
            if kind == "end":
                break
            if not cb.cancel.cancelled:  # after Stop, a late progress line would hide "Stopped"
                yield (kind, payload)
    finally:
        cb.cancel.cancel() if thread.is_alive() else None
    error = outcome.get("error")
    if isinstance(error, CancelledError):
        raise gr.Error("Stopped — nothing was saved for this run.")
    if isinstance(error, StudioError):
        raise gr.Error(str(error))
    if error is not None:
        raise gr.Error(f"Internal error: {type(error).__name__}: {error}")
    yield ("done", outcome.get("result"))


def call(work: Callable[[], Any]) -> Any:
    """Run a short engine call, turning studio errors into ``gr.Error``."""
    import gradio as gr

    try:
        return work()
    except StudioError as exc:
        raise gr.Error(str(exc)) from None


def first_only(value: Any, n_outputs: int) -> tuple[Any, ...]:
    """An update of the first output (a status line) that leaves the other outputs as they are."""
    import gradio as gr

    return (value, *[gr.skip()] * (n_outputs - 1))


def job_events(ctx: Any, request: Any, kind: str, record: dict[str, Any],
               work: Callable[[Callbacks], Any], *, first: str = "▶ Starting…"
               ) -> Iterator[tuple[str, Any]]:
    """Run ``work(callbacks)`` as a recorded job of this session: yields ``("status", text)``
    (``first``, then a progress line per step), ``("metrics", dict)`` and ``("done", result)``."""
    import time

    from studio.tabs.jobs import tracked
    from studio.widgets import progress_line

    yield "status", first
    started = time.monotonic()
    for event, payload in stream(tracked(ctx, request, kind, record, work)):
        if event == "progress":
            yield "status", progress_line(payload, started)
        elif event in ("metrics", "done"):
            yield event, payload


def variant_job(ctx: Any, request: Any, choice: str | None, verb: Callable[..., Any],
                config: Any, *, kind: str, label: str | None = None,
                record: dict[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
    """``verb(input, None, config, out_dir=run_dir, ...)`` on the chosen variant (none: the
    workspace's current model, a default baseline trained first) as a recorded job; events as
    ``job_events``, the last one ``("done", (result, run_dir))``."""
    from studio.tabs.jobs import job_config
    from studio.widgets import input_note

    src = call(lambda: ctx.find_run(request, choice)) if choice else None
    run_dir = ctx.new_run_dir(request, kind)

    def work(cb: Callbacks) -> Any:
        source = src or ctx.ensure_baseline(request, cb)
        return verb(source, None, config, out_dir=run_dir, callbacks=cb,
                    measure_options=getattr(ctx, "measure_options", None))

    for event, payload in job_events(ctx, request, label or kind,
                                     {**job_config(src, config), **(record or {})}, work,
                                     first=input_note(ctx, request, src)):
        yield event, (payload, run_dir) if event == "done" else payload
