"""SQLite job store: every long operation is a row that survives a restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE", "FINISHED", "Job", "JobStore"]

# SQLite's own mutexes do not survive a fork: a job forked while another thread was inside
# SQLite could wait on them forever in its child. Every store's calls and every fork take
# this one lock, so no thread is inside SQLite when a process forks. Hand-written: the
# sqlite3 module has no fork hook.
_FORK_GATE = threading.RLock()
os.register_at_fork(before=_FORK_GATE.acquire, after_in_parent=_FORK_GATE.release,
                    after_in_child=_FORK_GATE.release)

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    result_path TEXT,
    error TEXT,
    summary TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at);
"""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Job:
    """One job as stored: what was asked, by whom, how far it got, where its result is."""

    id: str
    kind: str
    owner: str
    config: dict[str, Any]
    status: str
    progress: float
    message: str
    result_path: str | None
    error: str | None
    summary: dict[str, Any] | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def duration_s(self) -> float | None:
        if not self.started_at or not self.finished_at:
            return None
        start = dt.datetime.fromisoformat(self.started_at)
        return (dt.datetime.fromisoformat(self.finished_at) - start).total_seconds()

    def to_dict(self, *, owner: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = self.duration_s
        if not owner:
            out.pop("owner")
        return out


class JobStore:
    """A small thread-safe, fork-safe wrapper over one SQLite file (WAL mode)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _FORK_GATE
        with self._lock:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30,
                                       isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writes ----------------------------------------------------------------------------
    def create(self, kind: str, owner: str, config: dict[str, Any]) -> Job:
        job_id = f"job-{secrets.token_urlsafe(16)}"  # unguessable: 128 random bits
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, kind, owner, config, status, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?)",
                (job_id, kind, owner, json.dumps(config, default=str), _now()))
        return self.get(job_id)  # type: ignore[return-value]

    def update(self, job_id: str, **fields: Any) -> None:
        allowed = {"status", "progress", "message", "result_path", "error", "summary",
                   "started_at", "finished_at"}
        bad = set(fields) - allowed
        if bad:
            raise KeyError(f"unknown job fields {sorted(bad)}")
        if "summary" in fields and fields["summary"] is not None:
            fields["summary"] = json.dumps(fields["summary"], default=str)
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def mark_started(self, job_id: str) -> bool:
        """queued → running; False if the job is no longer queued (e.g. cancelled)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'running', started_at = ? "
                "WHERE id = ? AND status = 'queued'", (_now(), job_id))
        return cur.rowcount == 1

    def finish(self, job_id: str, status: str, **fields: Any) -> None:
        self.update(job_id, status=status, finished_at=_now(), **fields)

    def interrupt_unfinished(self) -> int:
        """On start: jobs left queued or running by a previous process are interrupted."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = 'interrupted', finished_at = ?, "
                "error = 'The server restarted while this job was ' || status || '.' "
                "WHERE status IN ('queued', 'running')", (_now(),))
        return cur.rowcount

    def expire(self, before: str) -> list[Job]:
        """Delete finished jobs that finished before ``before`` (ISO time); returns them."""
        sql = ("FROM jobs WHERE status NOT IN ('queued', 'running') "
               "AND COALESCE(finished_at, created_at) < ?")
        with self._lock:
            rows = self._db.execute("SELECT * " + sql, (before,)).fetchall()
            self._db.execute("DELETE " + sql, (before,))
        return [_job(r) for r in rows]

    # --- reads -----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list(self, owner: str | None = None, *, status: str | None = None,
             limit: int = 200) -> list[Job]:
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"  # same millisecond: newest first
        with self._lock:
            rows = self._db.execute(sql, (*args, int(limit))).fetchall()
        return [_job(r) for r in rows]

    def count_active(self, owner: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
        args: tuple[Any, ...] = ()
        if owner is not None:
            sql += " AND owner = ?"
            args = (owner,)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["summary"] = json.loads(d["summary"]) if d.get("summary") else None
    return Job(**d)
