"""Per-browser-session storage of variants (run folders) and the engine concurrency group."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from core.artifacts import new_run_id
from core.errors import StudioError

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
WORKSPACE_KEY = re.compile(r"^ws1-[A-Za-z0-9_-]{43}$")


def new_workspace_key() -> str:
    """A fresh private workspace key (256 random bits), kept only in the user's browser."""
    return "ws1-" + secrets.token_urlsafe(32)


class NotFoundError(StudioError):
    """A run or session id that does not exist for this session."""


@dataclass
class StudioContext:
    """Where sessions keep their runs, and how long work is queued.

    Each browser session (Gradio's ``session_hash``) owns ``root/sessions/<id>/``; every
    variant is a run folder there, so a ``gr.State`` never holds a model.
    """

    root: Path
    engine_limit: int = 1
    queue_size: int = 16
    upload_limit_mb: float = 200.0
    upload_quota_mb: float = 1000.0  # per client address per hour (studio.quota)
    measure_options: dict[str, Any] = field(default_factory=dict)
    session_ttl_hours: float = 24.0
    jobs_per_session: int = 2
    job_queue: int = 8
    _last_cleanup: float = field(default=0.0, repr=False)
    _secret: bytes = field(default=b"", repr=False)
    _bindings: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        (self.root / "sessions").mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, root: str | Path | None = None) -> "StudioContext":
        """Settings from the environment (a Space sets them as variables): STUDIO_ROOT and
        STUDIO_<FIELD> for each limit, e.g. STUDIO_UPLOAD_LIMIT_MB=50, STUDIO_QUEUE_SIZE=8."""
        kinds = {"engine_limit": int, "queue_size": int, "upload_limit_mb": float,
                 "upload_quota_mb": float,
                 "session_ttl_hours": float, "jobs_per_session": int, "job_queue": int}
        from core.limits import env_number

        values = {name: env_number(f"STUDIO_{name.upper()}", None, integer=kind is int)
                  for name, kind in kinds.items()}
        return cls(root or os.environ.get("STUDIO_ROOT", "results"),
                   **{name: value for name, value in values.items() if value is not None})

    # --- events -----------------------------------------------------------------------
    def engine(self) -> dict[str, Any]:
        """Keyword arguments for every long-running event: one shared concurrency group."""
        return {"concurrency_id": "engine", "concurrency_limit": self.engine_limit}

    # --- sessions and runs --------------------------------------------------------------
    def cleanup_sessions(self, *, now: float | None = None, every_s: float = 600.0) -> list[str]:
        """Delete session folders untouched for ``session_ttl_hours`` (at most every_s)."""
        now = time.time() if now is None else now
        if now - self._last_cleanup < every_s:
            return []
        self._last_cleanup = now
        removed = []
        for folder in (self.root / "sessions").iterdir():
            newest = max((p.stat().st_mtime for p in folder.rglob("*")),
                         default=folder.stat().st_mtime)
            if now - newest > self.session_ttl_hours * 3600:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        for binding in (self.root / "bindings").glob("*"):
            if now - binding.stat().st_mtime > self.session_ttl_hours * 3600:
                binding.unlink(missing_ok=True)
                self._bindings.clear()
        from core.jobs import get_manager  # finished jobs (and API job folders) expire too

        get_manager(self.root, measure_options=self.measure_options).expire(
            self.session_ttl_hours * 3600)
        return removed

    def session_id(self, request: Any) -> str:
        """The session's folder id. A browser bound to a workspace (``bind_workspace``) gets its
        workspace's folder; otherwise the id is derived from a ``gr.Request``'s session hash (or
        a plain string in tests) with a server-side key: a shared download link shows this id,
        from which nobody can recover the session hash or workspace key that acts as the
        session."""
        sid = request if isinstance(request, str) else getattr(request, "session_hash", None)
        sid = re.sub(r"[^A-Za-z0-9_-]", "", str(sid or ""))[:64]
        if not sid:
            raise StudioError("This action needs a browser session; reload the page.")
        if not isinstance(request, str):
            bound = self._bound_workspace(sid)
            if bound:
                return bound
        return self._derive(sid)

    def _derive(self, text: str) -> str:
        return hmac.new(self._key(), text.encode(), hashlib.sha256).hexdigest()[:32]

    # --- workspaces: a private key kept in the browser (gr.BrowserState) ----------------------
    def bind_workspace(self, request: Any, key: Any) -> str:
        """Bind this browser session to the workspace of ``key`` (a fresh key when ``key`` is
        missing or malformed); returns the key to keep in the browser."""
        key = key if isinstance(key, str) and WORKSPACE_KEY.match(key) else new_workspace_key()
        sid = re.sub(r"[^A-Za-z0-9_-]", "", str(getattr(request, "session_hash", "") or ""))
        if not sid:
            raise StudioError("This action needs a browser session; reload the page.")
        folder = self._derive(f"workspace:{key}")
        bindings = self.root / "bindings"
        bindings.mkdir(exist_ok=True)
        (bindings / self._derive(f"binding:{sid[:64]}")).write_text(folder)
        self._bindings[sid[:64]] = folder
        (self.session_dir(request) / ".last-visit").write_text(str(time.time()))  # TTL restarts
        return key

    def _bound_workspace(self, sid: str) -> str | None:
        if sid in self._bindings:
            return self._bindings[sid]
        path = self.root / "bindings" / self._derive(f"binding:{sid}")
        folder = path.read_text().strip() if path.is_file() else ""
        if re.fullmatch(r"[0-9a-f]{32}", folder):
            self._bindings[sid] = folder
            return folder
        return None

    def _key(self) -> bytes:
        """This root's secret (created once, never served: only sessions/ is)."""
        if self._secret:
            return self._secret
        path = self.root / ".session-key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:  # made earlier, or by another thread or process just now
            pass
        for _ in range(50):  # another writer may not have finished its one line yet
            key = path.read_text().strip()
            if len(key) == 64:
                break
            time.sleep(0.01)
        self._secret = key.encode()
        return self._secret

    def session_dir(self, request: Any) -> Path:
        path = self.root / "sessions" / self.session_id(request)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_run_dir(self, request: Any, operation: str) -> Path:
        """A fresh, unguessable run folder path (not created: engines stage into it)."""
        return self.session_dir(request) / new_run_id(operation)

    def runs(self, request: Any) -> list[Path]:
        """This session's finished run folders, oldest first."""
        folder = self.session_dir(request)
        done = [p for p in folder.iterdir() if (p / "report.json").is_file()]
        return sorted(done, key=lambda p: (p / "report.json").stat().st_mtime)

    def reports(self, request: Any) -> list[tuple[Path, dict[str, Any]]]:
        return [(p, json.loads((p / "report.json").read_text())) for p in self.runs(request)]

    def find_run(self, request: Any, run_id: str) -> Path:
        """A run of this session by id; another session's id (or any odd string) is not found."""
        run_id = str(run_id or "").split(" ", 1)[0]
        path = self.session_dir(request) / run_id
        if not _SAFE_ID.match(run_id) or not (path / "report.json").is_file():
            raise NotFoundError(f"Variant '{run_id}' was not found in this session.")
        return path

    def baseline(self, request: Any) -> Path | None:
        """The newest trained (or uploaded) baseline of this session, if any."""
        for path, report in reversed(self.reports(request)):
            if report.get("operation") in ("train", "benchmark"):
                return path
        return None

    def current(self, request: Any) -> Path | None:
        """The workspace's current model: the one picked in the top bar, else the newest
        baseline (trained or uploaded)."""
        marker = self.session_dir(request) / ".current"
        if marker.is_file():
            with contextlib.suppress(NotFoundError):
                return self.find_run(request, marker.read_text().strip())
        return self.baseline(request)

    def set_current(self, request: Any, run_id: str) -> Path:
        """Make a run of this workspace the current model (NotFoundError for any other id)."""
        path = self.find_run(request, run_id)
        (self.session_dir(request) / ".current").write_text(path.name)
        return path

    def ensure_baseline(self, request: Any, callbacks: Any = None) -> Path:
        """The current model; trains the built-in default (digits + cnn) when there is none,
        and makes it the current model (Model & Data then shows it)."""
        found = self.current(request)
        if found is not None:
            return found
        from core.runs import train_baseline

        with self.session_lock(request):
            found = self.current(request)
            if found is None:
                found = self.new_run_dir(request, "train")
                train_baseline("cnn", "digits", out_dir=found, callbacks=callbacks,
                               measure_options=self.measure_options)
                self.set_current(request, found.name)
        return found

    @contextlib.contextmanager
    def session_lock(self, request: Any) -> Iterator[None]:
        """Held by one job of this session at a time, across threads and job processes."""
        with open(self.session_dir(request) / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def variant_choices(self, request: Any) -> list[tuple[str, str]]:
        """Dropdown choices ``(friendly label, run id)`` for this workspace's variants (the
        user's own names where given)."""
        from studio.names import custom_names

        reports = self.reports(request)
        by_id = {p.name: r for p, r in reports}
        own = custom_names(self.session_dir(request))
        return [(variant_label(r, by_id, own.get(p.name)), p.name) for p, r in reports]

    def rename(self, request: Any, run_id: str, name: str) -> str:
        """Name a variant of this workspace ("" restores the derived name)."""
        from studio.names import set_custom_name

        path = self.find_run(request, run_id)
        return set_custom_name(self.session_dir(request), path.name, name)

    def display_name(self, request: Any, path: Path, report: dict[str, Any]) -> str:
        """What the user calls this variant: their own name, else the derived one."""
        from studio.names import custom_names, display_name

        return display_name(report, path.name, custom_names(self.session_dir(request)))


def describe(report: dict[str, Any]) -> str:
    """A short human label for a report: operation, method, accuracy."""
    acc = (report.get("result") or {}).get("accuracy")
    what = report.get("method") or report.get("config", {}).get("model") or ""
    text = f"{report.get('operation')} {what}".strip()
    return f"{text} (acc {acc:.3f})" if isinstance(acc, float) else text


def variant_label(report: dict[str, Any], reports: dict[str, dict[str, Any]],
                  own_name: str | None = None) -> str:
    """A picker label: the user's or the friendly name, indented by lineage depth, accuracy,
    time made."""
    from studio.names import friendly_name

    depth, parent = 0, report.get("parent")
    while parent in reports and depth < 8:
        depth, parent = depth + 1, reports[parent].get("parent")
    acc = (report.get("result") or {}).get("accuracy")
    made = str(report.get("created_at") or "")[11:16]
    extra = " · ".join(x for x in (f"acc {acc:.3f}" if isinstance(acc, float) else "", made)
                       if x)
    indent = "  " * max(depth - 1, 0) + ("↳ " if depth else "")
    return f"{indent}{own_name or friendly_name(report)}" + (f"  ({extra})" if extra else "")


Handler = Callable[..., Any]
