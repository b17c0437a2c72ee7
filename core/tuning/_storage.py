"""Optuna storages from a URL: SQLite (default), any RDB (PostgreSQL), journal files."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Sequence

from core.errors import StudioError

CONNECT_TIMEOUT_S = 5


class StorageError(StudioError):
    """A study storage cannot be opened, or holds a study that does not fit the config."""


def mask_url(url: str) -> str:
    """The URL with its password hidden (for messages and reports)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(url))


def default_storage(out_dir: str | Path) -> str:
    """``sqlite:///<results folder>/studies.db``: beside the run folder, so it outlives it."""
    folder = Path(out_dir).resolve().parent
    return f"sqlite:///{folder / 'studies.db'}"


def normalize_url(url: str) -> str:
    """Accept a plain file path too: ``*.db``/``*.sqlite`` → SQLite, ``*.log`` → journal."""
    url = str(url).strip()
    if "://" in url:
        return url
    path = Path(url).expanduser().resolve()
    if path.suffix in (".log", ".journal", ".jsonl"):
        return f"journal:///{path}"
    return f"sqlite:///{path}"


def storage_kind(url: str) -> str:
    url = normalize_url(url)
    if url.startswith("journal:"):
        return "journal"
    if url.startswith("sqlite:"):
        return "sqlite"
    return "rdb"


def _sqlite_creator(path: str) -> Any:
    """SQLite connections in WAL mode with ``synchronous=NORMAL``: ~5× faster commits (a
    killed process loses nothing committed; only a power cut may drop the last commits), and
    readers do not block the writer, which helps several local workers."""
    import sqlite3

    def connect() -> Any:
        con = sqlite3.connect(path, timeout=60, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    return connect


def _pg_driver() -> str:
    """SQLAlchemy 2.1 defaults to psycopg (3); fall back to psycopg2 when only it exists."""
    import importlib.util

    for name, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(name) is not None:
            return driver
    return "psycopg"


def _journal_storage(url: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(url.split("://", 1)[1] if "://" in url else url.split(":", 1)[1])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    except OSError as exc:
        raise StorageError(f"Cannot open the journal file '{path}': {exc}.") from None


def _sqlite_engine_kwargs(url: str) -> dict[str, Any]:
    db = url.split(":///", 1)[1] if ":///" in url else ""
    if not db or db == ":memory:":
        return {"connect_args": {"timeout": 60}}
    try:
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"Cannot create the folder for '{db}': {exc}.") from None
    return {"creator": _sqlite_creator(db)}


def _engine_kwargs(url: str) -> tuple[str, dict[str, Any]]:
    """The SQLAlchemy URL (PostgreSQL with an installed driver) and its engine options:
    connect timeouts, SQLite's waiting creator."""
    if url.startswith("sqlite:"):
        return url, _sqlite_engine_kwargs(url)
    if url.startswith(("postgresql", "postgres")):
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+" + _pg_driver() + url[len("postgresql"):]
        return url, {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
                     "pool_pre_ping": True}
    if url.startswith("mysql"):
        return url, {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return url, {}


def _heartbeat_kwargs(heartbeat_s: int | None, max_retry: int) -> dict[str, Any]:
    """RDBStorage options: a heartbeat, and a retry of trials whose process died."""
    import optuna

    if not heartbeat_s:
        return {}
    kwargs: dict[str, Any] = {"heartbeat_interval": int(heartbeat_s),
                              "grace_period": 2 * int(heartbeat_s)}
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:  # Optuna ≥ 4.9
        kwargs["heartbeat_stale_trial_callback"] = retry(max_retry=max_retry)
    else:
        kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(
            max_retry=max_retry)
    return kwargs


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    import optuna

    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as exc:
            # Workers started together race to create the tables: try again.
            text = str(exc).lower()
            if attempt == 3 or not ("duplicate key" in text or "already exists" in text
                                    or "database is locked" in text):
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(url: str, *, heartbeat_s: int | None = 10, max_retry: int = 1) -> Any:
    """An Optuna storage for ``url``; fails within a few seconds with a clear message.

    RDB storages (SQLite, PostgreSQL, MySQL) get a heartbeat: a trial whose process died
    is marked failed after ``2 × heartbeat_s`` and re-queued (``RetryFailedTrialCallback``).
    """
    from core.tuning._search import _quiet

    _quiet()
    url = normalize_url(url)
    shown = mask_url(url)
    if url.startswith("journal:"):
        return _journal_storage(url)
    url, engine_kwargs = _engine_kwargs(url)
    kwargs = _heartbeat_kwargs(heartbeat_s, max_retry)
    start = time.perf_counter()
    try:
        return _rdb_storage(url, engine_kwargs, kwargs)
    except ModuleNotFoundError as exc:
        hint = "psycopg2-binary" if "psycopg" in str(exc) else exc.name
        raise StorageError(f"The storage '{shown}' needs the Python driver '{exc.name}': "
                           f"pip install {hint}.") from None
    except Exception as exc:  # sqlalchemy errors: bad URL, refused, timeout, auth
        if "Failed to import DB access module" in str(exc):
            raise StorageError(f"The storage '{shown}' needs a database driver that is not "
                               "installed (PostgreSQL: pip install psycopg2-binary).") from None
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        took = time.perf_counter() - start
        raise StorageError(f"Cannot connect to the study storage '{shown}' (gave up after "
                           f"{took:.1f} s): {reason}") from None


def check_study(storage: Any, name: str, objectives: Sequence[str], directions: Sequence[str],
                shown: str) -> bool:
    """True if the study exists (with the same objectives); a clear error if it does not fit."""
    import optuna

    try:
        summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    except Exception as exc:
        raise StorageError(f"Cannot read studies from '{shown}': {exc}") from None
    if name not in summaries:
        return False
    found = [d.name.lower() for d in summaries[name].directions]
    attrs = summaries[name].user_attrs or {}
    had = attrs.get("objectives")
    if list(found) != [d.lower() for d in directions] or (had and list(had) != list(objectives)):
        what = had or f"directions {found}"
        raise StorageError(
            f"The study '{name}' in '{shown}' was created with objectives {what}; this config "
            f"asks for {list(objectives)} ({list(directions)}). Use another study name, or the "
            "same objectives to continue it.")
    return True
