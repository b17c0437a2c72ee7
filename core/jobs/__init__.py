"""Jobs: every long operation as a row in a SQLite store, run by a small worker pool."""

from core.jobs._kinds import KINDS, JobKind, available_kinds
from core.jobs._manager import (
    BusyError,
    JobManager,
    JobNotFoundError,
    NotResumableError,
    get_manager,
    summarize,
)
from core.jobs._store import ACTIVE, FINISHED, Job, JobStore

__all__ = [
    "ACTIVE",
    "FINISHED",
    "KINDS",
    "BusyError",
    "Job",
    "JobKind",
    "JobManager",
    "JobNotFoundError",
    "JobStore",
    "NotResumableError",
    "available_kinds",
    "get_manager",
    "summarize",
]
