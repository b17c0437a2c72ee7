"""A small worker pool over the job store: global queue limit, per-owner cap, cancellation."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from core.callbacks import Callbacks, CancelToken
from core.errors import CancelledError, InvalidParameterError, StudioError
from core.jobs._store import FINISHED, Job, JobStore

__all__ = ["BusyError", "JobManager", "JobNotFoundError", "NotResumableError", "get_manager"]

log = logging.getLogger(__name__)


class BusyError(StudioError):
    """The queue (or this owner's share of it) is full: try again later."""


class NotResumableError(StudioError):
    """Only interrupted/cancelled/failed tuning jobs can be resumed."""


class JobNotFoundError(StudioError):
    """No such job for this owner (another owner's job is 'not found' too)."""


def owner_key(owner: str) -> str:
    """A short folder-safe key for an owner (session id or API token)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:20]


class JobManager:
    """Runs jobs from a SQLite store in ``workers`` threads.

    ``queue_limit`` bounds queued + running jobs over all owners, ``per_owner`` bounds them
    per owner; beyond either, ``submit`` raises BusyError ("busy, try again"). Cancellation
    is cooperative: the job's CancelToken is checked by every engine loop, and engines write
    through ``core.artifacts.staging`` so a cancelled job leaves nothing half-written.
    """

    def __init__(self, root: str | Path, *, workers: int = 1, queue_limit: int = 8,
                 per_owner: int = 2, measure_options: Mapping[str, Any] | None = None,
                 kinds: Mapping[str, Any] | None = None) -> None:
        from core.jobs._kinds import available_kinds

        self.root = Path(root).resolve()
        self.store = JobStore(self.root / "jobs.sqlite")
        self.interrupted_on_start = self.store.interrupt_unfinished()
        self.workers = max(1, min(int(workers), 2))
        self.queue_limit = int(queue_limit)
        self.per_owner = int(per_owner)
        self.measure_options = dict(measure_options or {})
        self.kinds = dict(kinds) if kinds is not None else available_kinds()
        self._queue: queue.Queue[str] = queue.Queue()
        self._tokens: dict[str, CancelToken] = {}
        self._threads: list[threading.Thread] = []
        self._submit_lock = threading.Lock()
        self._stop = threading.Event()

    # --- public API ----------------------------------------------------------------------
    def submit(self, kind: str, owner: str, config: Mapping[str, Any] | None = None, *,
               _validated: bool = False) -> Job:
        """Validate ``config`` for ``kind`` and queue the job; returns the stored job."""
        if kind not in self.kinds:
            raise InvalidParameterError("kind", f"one of {sorted(self.kinds)}", kind)
        spec = self.kinds[kind]
        clean = dict(config or {}) if _validated else \
            spec.validate(dict(config or {}), self._resolver(owner))
        with self._submit_lock:
            if self.store.count_active() >= self.queue_limit:
                raise BusyError(f"The studio is busy ({self.queue_limit} jobs queued or "
                                "running); try again in a minute.")
            if self.store.count_active(owner) >= self.per_owner:
                raise BusyError(f"You already have {self.per_owner} jobs queued or running; "
                                "wait for one to finish (or cancel it) and try again.")
            job = self.store.create(kind, owner, clean)
            self._tokens[job.id] = CancelToken()
        self._ensure_workers()
        self._queue.put(job.id)
        return job

    def run_here(self, kind: str, owner: str, config: Mapping[str, Any],
                 work: Callable[[Callbacks], Any], *, callbacks: Callbacks | None = None,
                 result_path: str | Path | None = None) -> Any:
        """Run ``work(callbacks)`` in the calling thread as a recorded job.

        For work that already runs in a worker of its own (a UI event): the job is listed,
        its progress stored, and it can be cancelled from the jobs panel or the API like
        any other; ``callbacks`` (e.g. the UI's) still receive progress and share the token.
        """
        outer = Callbacks.ensure(callbacks)
        job = self.store.create(kind, owner, dict(config))
        self.store.mark_started(job.id)
        self._tokens[job.id] = outer.cancel
        last = [0.0]

        def on_progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2:
                last[0] = now
                self.store.update(job.id, progress=fraction, message=message[:300])
            if outer.on_progress is not None:
                outer.on_progress(fraction, message)

        cb = Callbacks(on_progress=on_progress, on_metrics=outer.on_metrics,
                       cancel=outer.cancel)
        try:
            result = work(cb)
        except CancelledError:
            self.store.finish(job.id, "cancelled", message="Stopped; nothing was saved.")
            raise
        except StudioError as exc:
            self.store.finish(job.id, "failed", error=str(exc), message="Failed")
            raise
        except BaseException as exc:
            self.store.finish(job.id, "failed", message="Failed",
                              error=f"Internal error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._tokens.pop(job.id, None)
        report = getattr(result, "report", result)
        path = result_path or getattr(result, "run_dir", None)
        self.store.finish(job.id, "succeeded", progress=1.0, message="Done",
                          result_path=str(path) if path else None, summary=summarize(report))
        return result

    def get(self, job_id: str, owner: str) -> Job:
        job = self.store.get(str(job_id))
        if job is None or job.owner != owner:
            raise JobNotFoundError(f"Job '{job_id}' was not found.")
        return job

    def list(self, owner: str, *, status: str | None = None, limit: int = 200) -> list[Job]:
        return self.store.list(owner, status=status, limit=limit)

    def cancel(self, job_id: str, owner: str) -> Job:
        """Ask a job to stop; a queued job is cancelled at once, a running one within ~1 s."""
        job = self.get(job_id, owner)
        if job.status == "queued":
            self.store.finish(job.id, "cancelled", message="Cancelled before it started.")
        token = self._tokens.get(job.id)
        if token is not None and job.status in ("queued", "running"):
            token.cancel()
        return self.get(job_id, owner)

    def resume(self, job_id: str, owner: str) -> Job:
        """Queue a new job that continues an interrupted/cancelled/failed tuning study."""
        job = self.get(job_id, owner)
        if job.kind != "tune" or job.status not in ("interrupted", "cancelled", "failed"):
            raise NotResumableError(
                f"Job '{job_id}' cannot be resumed: only an interrupted, cancelled or failed "
                f"'tune' job can (this one is a '{job.kind}' job, {job.status}).")
        origin = job.config.get("resume_of") or job.id
        return self.submit("tune", owner, {**job.config, "resume_of": origin}, _validated=True)

    def wait(self, job_id: str, owner: str, timeout: float = 60.0, poll: float = 0.1) -> Job:
        """Block until the job has finished (or ``timeout``); returns its latest state."""
        end = time.monotonic() + timeout
        job = self.get(job_id, owner)
        while job.status not in FINISHED and time.monotonic() < end:
            time.sleep(poll)
            job = self.get(job_id, owner)
        return job

    def result_dir(self, job_id: str, owner: str) -> Path:
        """The run folder of a succeeded job of this owner."""
        job = self.get(job_id, owner)
        if job.status != "succeeded" or not job.result_path:
            raise JobNotFoundError(f"Job '{job_id}' has no result (status: {job.status}).")
        return Path(job.result_path)

    def metrics(self, owner: str | None = None) -> dict[str, Any]:
        """Counts by status, mean duration of succeeded jobs, best accuracy reached."""
        jobs = self.store.list(owner, limit=100_000)
        counts: dict[str, int] = {}
        for j in jobs:
            counts[j.status] = counts.get(j.status, 0) + 1
        done = [j for j in jobs if j.status == "succeeded"]
        durations = [j.duration_s for j in done if j.duration_s is not None]
        accs = [(j.summary or {}).get("accuracy") for j in done]
        accs = [a for a in accs if isinstance(a, (int, float))]
        return {"total": len(jobs), "by_status": counts, "completed": counts.get("succeeded", 0),
                "failed": counts.get("failed", 0), "cancelled": counts.get("cancelled", 0),
                "interrupted": counts.get("interrupted", 0),
                "running": counts.get("running", 0), "queued": counts.get("queued", 0),
                "mean_duration_s": sum(durations) / len(durations) if durations else None,
                "best_accuracy": max(accs) if accs else None,
                "workers": self.workers, "queue_limit": self.queue_limit,
                "per_owner": self.per_owner}

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel running jobs and stop the workers."""
        self._stop.set()
        for token in self._tokens.values():
            token.cancel()
        for _ in self._threads:
            self._queue.put("")
        for t in self._threads:
            t.join(timeout)
        self.store.close()

    def expire(self, max_age_s: float) -> int:
        """Forget finished jobs older than ``max_age_s`` and delete their API result folders
        (UI results live in session folders, cleaned with them); returns how many."""
        import datetime as dt
        import shutil

        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=max_age_s)
        gone = self.store.expire(cutoff.isoformat(timespec="milliseconds"))
        jobs_dir = (self.root / "jobs").resolve()
        for job in gone:
            folder = Path(job.result_path).resolve() if job.result_path else None
            if folder is not None and jobs_dir in folder.parents:
                shutil.rmtree(folder, ignore_errors=True)
        return len(gone)

    # --- workers -------------------------------------------------------------------------
    def owner_dir(self, owner: str) -> Path:
        return self.root / "jobs" / owner_key(owner)

    def _resolver(self, owner: str):
        def resolve(job_id: Any, field: str = "input") -> Path:
            try:
                return self.result_dir(str(job_id), owner)
            except JobNotFoundError as exc:
                raise InvalidParameterError(field, "the id of one of your succeeded jobs",
                                            job_id) from exc
        return resolve

    def _ensure_workers(self) -> None:
        with self._submit_lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.workers and not self._stop.is_set():
                t = threading.Thread(target=self._work, name=f"studio-job-{len(self._threads)}",
                                     daemon=True)
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if not job_id:
                return
            try:
                self._run(job_id)
            except Exception:  # never let a worker die
                log.exception("job %s crashed the worker", job_id)

    def _run(self, job_id: str) -> None:
        if not self.store.mark_started(job_id):
            self._tokens.pop(job_id, None)
            return
        job = self.store.get(job_id)
        assert job is not None
        token = self._tokens.setdefault(job_id, CancelToken())
        last = [0.0]

        def on_progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or fraction >= 1.0:
                last[0] = now
                self.store.update(job_id, progress=fraction, message=message[:300])

        cb = Callbacks(on_progress=on_progress, cancel=token)
        out_dir = self.owner_dir(job.owner) / job_id
        try:
            cb.check()
            spec = self.kinds[job.kind]
            report = spec.run(job.config, out_dir, cb, self._resolver(job.owner),
                              dict(self.measure_options))
            path = getattr(report, "run_dir", None) or out_dir
            report = getattr(report, "report", report)
            self.store.finish(job_id, "succeeded", progress=1.0, message="Done",
                              result_path=str(path), summary=summarize(report))
        except CancelledError:
            self.store.finish(job_id, "cancelled", message="Stopped; nothing was saved.")
        except StudioError as exc:
            self.store.finish(job_id, "failed", error=str(exc), message="Failed")
        except Exception as exc:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self.store.finish(job_id, "failed", message="Failed",
                              error=f"Internal error: {type(exc).__name__}: {exc}")
        finally:
            self._tokens.pop(job_id, None)


def summarize(report: Any) -> dict[str, Any]:
    """The few figures a job list shows: accuracy, size, p50 at batch 64, ratios."""
    if not isinstance(report, Mapping):
        return {}
    res = report.get("result") or {}
    out: dict[str, Any] = {"operation": report.get("operation"), "method": report.get("method")}
    if res:
        out.update(accuracy=res.get("accuracy"), size_bytes=res.get("size_bytes"),
                   p50_b64_ms=((res.get("latency_ms") or {}).get("64") or {}).get("p50"))
    out.update({k: v for k, v in (report.get("ratios") or {}).items() if v is not None})
    if report.get("operation") == "compare":
        out["pareto"] = report.get("pareto")
        out["best_accuracy"] = max((r["accuracy"] for r in report.get("rows", [])), default=None)
    if report.get("operation") == "tune":
        study = report.get("study") or {}
        out["trials"] = study.get("n_trials")
        out["resumed"] = study.get("resumed")
    if report.get("operation") == "auto":
        out["winner"] = (report.get("auto") or {}).get("winner")
    return out


_MANAGERS: dict[str, JobManager] = {}
_MANAGERS_LOCK = threading.Lock()


def get_manager(root: str | Path, **options: Any) -> JobManager:
    """One JobManager per root folder in this process (created on first use)."""
    key = str(Path(root).resolve())
    with _MANAGERS_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = JobManager(root, **options)
        return _MANAGERS[key]
