"""Per-client limits of the served app: an upload quota (Gradio's upload route takes files from
anyone), a size limit on every other request body, a share of the job queue per address, and
the client's address behind a proxy.

Hand-written because Starlette/Gradio have no byte quota or per-address job count: a small ASGI
middleware counts the bytes each client address has uploaded in a sliding window and answers
429 beyond it; the body limit itself is Starlette's.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable

UPLOAD_PATHS = ("/gradio_api/upload", "/api/uploads")


class UploadQuota:
    """ASGI middleware: at most ``quota_bytes`` uploaded per client address per ``window_s``.

    A request's declared length is booked when it is admitted (before any await, so uploads
    sent side by side each see the others), then its bytes as they arrive; one that goes past
    the quota mid-stream (no or a false Content-Length) is cut off and answered 429.
    """

    def __init__(self, app: Any, *, quota_bytes: int, window_s: float = 3600.0,
                 paths: tuple[str, ...] = UPLOAD_PATHS, max_clients: int = 10_000) -> None:
        self.app, self.quota, self.window = app, int(quota_bytes), float(window_s)
        self.paths, self.max_clients = paths, max_clients
        self._used: OrderedDict[str, deque[list[float]]] = OrderedDict()

    def used(self, client: str, now: float | None = None) -> int:
        """Bytes ``client`` uploaded (or has booked) within the window."""
        now = time.monotonic() if now is None else now
        entries = self._used.get(client)
        while entries and entries[0][0] < now - self.window:
            entries.popleft()
        return int(sum(n for _, n in entries or ()))

    def _book(self, client: str, size: int) -> list[float]:
        entry = [time.monotonic(), float(size)]
        self._used.setdefault(client, deque()).append(entry)
        self._used.move_to_end(client)
        while len(self._used) > self.max_clients:  # bounded memory, oldest clients forgotten
            self._used.popitem(last=False)
        return entry

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" \
                or not str(scope.get("path", "")).startswith(self.paths):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown",))[0]
        declared = _content_length(scope)
        if self.used(client) + declared > self.quota:
            return await _refuse(send, self.quota, self.window)
        entry = self._book(client, declared)
        received, over, started = 0, False, False

        async def counted() -> dict:
            nonlocal received, over
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                entry[1] = max(declared, received)
                if not started and received > declared and self.used(client) > self.quota:
                    over = True  # the app reads an aborted body; its answer is replaced
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: dict) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            if not over:
                await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not over:
                raise
        finally:
            entry[1] = received  # what was booked but never sent is not counted
        if over:
            await _refuse(send, self.quota, self.window)


class AddressShare:
    """Jobs queued or running per client address, at most ``per_address`` (REST submits).

    A share per owner is not enough: one address gets STUDIO_TOKENS_PER_HOUR tokens (owners),
    enough to hold every slot of the job queue. A submit books its slot before it is validated
    (submits sent side by side each see the others); in memory, as the token issuer's table.
    """

    def __init__(self, per_address: int, *, max_clients: int = 10_000) -> None:
        self.per_address, self.max_clients = int(per_address), max_clients
        self._held: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, address: str, submit: Callable[[], Any],
               active: Callable[[Any], bool]) -> Any:
        """``submit()`` (a job) unless ``address`` holds ``per_address`` jobs for which
        ``active(job)`` is true; then BusyError (429)."""
        from core.jobs import BusyError

        booking = object()
        with self._lock:
            held = [j for j in self._held.pop(address, []) if not hasattr(j, "id") or active(j)]
            self._held[address] = held
            while len(self._held) > self.max_clients:
                self._held.popitem(last=False)
            if len(held) >= self.per_address:
                raise BusyError(f"This address already has {self.per_address} jobs queued or "
                                "running (STUDIO_JOBS_PER_ADDRESS); wait for one to finish.")
            held.append(booking)
        job = None
        try:
            job = submit()
            return job
        finally:
            with self._lock:
                held = self._held.setdefault(address, [])
                held[:] = [j for j in held if j is not booking] + ([job] if job else [])


class RequestBodyLimit:
    """ASGI middleware: a request body other than an upload is at most STUDIO_MAX_REQUEST_KB
    (read per request). One with a larger Content-Length is answered 413 naming the limit
    before a byte is read; one streamed without a length is cut off by Starlette's
    RequestBodyLimitMiddleware. Uploads (``paths``) have their own limits."""

    def __init__(self, app: Any, *, paths: tuple[str, ...] = UPLOAD_PATHS) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.middleware.body_limit import RequestBodyLimitMiddleware

        from core.limits import get_limit

        if scope["type"] != "http" or str(scope.get("path", "")).startswith(self.paths):
            return await self.app(scope, receive, send)
        kb = get_limit("request_kb")
        if _content_length(scope) > kb * 1024:
            return await _answer(send, 413, f"The request body is over the limit "
                                 f"STUDIO_MAX_REQUEST_KB={kb:,g} KB (files go to an upload: "
                                 "POST /api/uploads).")
        await RequestBodyLimitMiddleware(self.app, int(kb * 1024))(scope, receive, send)


def _content_length(scope: dict) -> int:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return max(int(value), 0)
            except ValueError:
                return 0
    return 0


async def _refuse(send: Any, quota: int, window: float) -> None:
    await _answer(send, 429, f"Upload quota reached: {quota / 2**20:.0f} MB per "
                  f"{window / 60:.0f} minutes from one address. Try again later.")


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ProxiedClient:
    """ASGI middleware behind one trusted proxy: the client is the last X-Forwarded-For entry
    (the address that proxy saw); entries before it are whatever the client sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            for key, value in scope.get("headers", []):
                if key == b"x-forwarded-for":
                    last = value.decode("latin-1").split(",")[-1].strip()
                    if last:
                        scope = {**scope, "client": (last, 0)}
                    break
        await self.app(scope, receive, send)
