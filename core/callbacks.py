"""Progress reporting and cooperative cancellation shared by every engine loop."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import CancelledError

__all__ = ["CancelToken", "Callbacks"]


class CancelToken:
    """A thread-safe flag a long loop checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("The job was cancelled.")


@dataclass
class Callbacks:
    """Hooks an engine calls: ``progress(fraction, message)`` and ``metrics(dict)``.

    ``check()`` raises CancelledError once the token is cancelled; engines call it often.
    """

    on_progress: Callable[[float, str], None] | None = None
    on_metrics: Callable[[dict[str, Any]], None] | None = None
    cancel: CancelToken = field(default_factory=CancelToken)

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        if self.on_progress is not None:
            self.on_progress(min(max(float(fraction), 0.0), 1.0), message)

    def metrics(self, values: dict[str, Any]) -> None:
        if self.on_metrics is not None:
            self.on_metrics(dict(values))

    def check(self) -> None:
        self.cancel.raise_if_cancelled()

    @classmethod
    def ensure(cls, callbacks: "Callbacks | None") -> "Callbacks":
        return callbacks if callbacks is not None else cls()

    def sub(self, lo: float, hi: float, prefix: str = "", *, metrics: bool = True,
            tag: dict[str, Any] | None = None) -> "Callbacks":
        """Callbacks for a sub-task: its progress 0..1 lands in ``lo..hi`` of this one, its
        messages prefixed, the same cancel token; its metrics are forwarded (with ``tag``'s
        fields added) unless ``metrics=False``."""

        def on_progress(fraction: float, message: str) -> None:
            self.progress(lo + (hi - lo) * fraction, prefix + message)

        on_metrics = None
        if metrics:
            on_metrics = self.metrics if not tag else (lambda d: self.metrics({**d, **tag}))
        return Callbacks(on_progress=on_progress, on_metrics=on_metrics, cancel=self.cancel)
