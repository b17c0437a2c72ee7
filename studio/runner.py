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
