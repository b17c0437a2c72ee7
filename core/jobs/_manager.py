"""A small worker pool over the job store: a fair queue across owners, isolated jobs, cancel."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from core.artifacts import clean_orphans
from core.callbacks import Callbacks, CancelToken
from core.errors import CancelledError, InvalidParameterError, StudioError, without_paths
from core.isolation import JobCrashedError, Limits, run_isolated
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
    """Runs jobs from a SQLite store in ``workers`` threads, each job in a child process.

    Fair share: ``per_owner`` bounds one owner's queued + running jobs; ``queue_limit`` bounds
    them over all owners, but an owner with nothing queued or running is still admitted (up to
    ``ADMIT_FACTOR`` × ``queue_limit``), and a free worker takes the oldest job of the owner
    served least recently, so nobody starves behind another owner's queue. Every job runs under
    ``limits`` (``core.isolation``): a crash, an out-of-memory or a runaway ends that job only.
    Cancellation is cooperative (the job's CancelToken; killed after a grace period), and
    engines write through ``core.artifacts.staging`` so a stopped job leaves nothing
    half-written.
    """

    ADMIT_FACTOR = 4

    def __init__(self, root: str | Path, *, workers: int = 1, queue_limit: int = 8,
                 per_owner: int = 2, measure_options: Mapping[str, Any] | None = None,
                 kinds: Mapping[str, Any] | None = None, limits: Limits | None = None) -> None:
        from core.jobs._kinds import available_kinds

        self.root = Path(root).resolve()
        self.store = JobStore(self.root / "jobs.sqlite")
        self.interrupted_on_start = self.store.interrupt_unfinished()
        clean_orphans(self.root)  # staging folders of jobs killed with the last server
        self.workers = max(1, min(int(workers), 2))
        self.queue_limit = int(queue_limit)
        self.per_owner = int(per_owner)
        self.measure_options = dict(measure_options or {})
        self.kinds = dict(kinds) if kinds is not None else available_kinds()
        self.limits = limits or Limits.from_env()
        self._wake = threading.Condition()
        self._served: dict[str, float] = {}  # owner -> when a worker last took one of its jobs
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
            self._admit(owner)
            job = self.store.create(kind, owner, clean)
            self._tokens[job.id] = CancelToken()
        self._ensure_workers()
        with self._wake:
            self._wake.notify()
        return job

    def _admit(self, owner: str) -> None:
        """Raise BusyError unless ``owner`` may queue one more job now (see the class doc)."""
        mine, total = self.store.count_active(owner), self.store.count_active()
        if mine >= self.per_owner:
            raise BusyError(f"You already have {self.per_owner} jobs queued or running; "
                            "wait for one to finish (or cancel it) and try again.")
        if (mine and total >= self.queue_limit) or total >= self.ADMIT_FACTOR * self.queue_limit:
            raise BusyError(f"The studio is busy ({total} jobs queued or running); try again "
                            "in a minute.")

    def run_here(self, kind: str, owner: str, config: Mapping[str, Any],
                 work: Callable[[Callbacks], Any], *, callbacks: Callbacks | None = None,
                 result_path: str | Path | None = None) -> Any:
        """Run ``work(callbacks)`` now, from the calling thread, as a recorded isolated job.

        For work that already has a worker of its own (a UI event): the job is listed, its
        progress stored, and it can be cancelled from the jobs panel or the API like any other;
        ``callbacks`` (e.g. the UI's) still receive progress and share the token. The work runs
        in a child process under ``limits``; its error (or the child's death) is raised here.
        """
        outer = Callbacks.ensure(callbacks)
        job = self.store.create(kind, owner, dict(config))
        self.store.mark_started(job.id)
        self._tokens[job.id] = outer.cancel
        return self._execute(job, work, outer, result_path=result_path, reraise=True)

    def _execute(self, job: Job, work: Callable[[Callbacks], Any], outer: Callbacks, *,
                 result_path: str | Path | None = None, fallback_path: Path | None = None,
                 reraise: bool = False) -> Any:
        """Run a started job's ``work`` isolated, record progress and its outcome. Its result
        folder: ``result_path``, else the result's ``run_dir``, else ``fallback_path``."""
        last = [0.0]

        def on_progress(fraction: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or fraction >= 1.0:
                last[0] = now
                self.store.update(job.id, progress=fraction, message=message[:300])
            if outer.on_progress is not None:
                outer.on_progress(fraction, message)

        cb = Callbacks(on_progress=on_progress, on_metrics=outer.on_metrics,
                       cancel=outer.cancel)
        try:
            result = run_isolated(work, cb, limits=self.limits)
        except BaseException as exc:
            self._record_failure(job, exc)
            if reraise:
                raise
            return None
        finally:
            self._tokens.pop(job.id, None)
        report = getattr(result, "report", result)
        path = result_path or getattr(result, "run_dir", None) or fallback_path
        self.store.finish(job.id, "succeeded", progress=1.0, message="Done",
                          result_path=str(path) if path else None, summary=summarize(report))
        return result

    def _record_failure(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, (JobCrashedError, CancelledError)):  # a killed child left its staging
            clean_orphans(self.root)
        if isinstance(exc, CancelledError):
            self.store.finish(job.id, "cancelled", message="Stopped; nothing was saved.")
        elif isinstance(exc, StudioError):
            self.store.finish(job.id, "failed", error=str(exc), message="Failed")
        else:
            log.error("job %s failed:\n%s", job.id, "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)))
            self.store.finish(job.id, "failed", message="Failed",
                              error=f"Internal error: {type(exc).__name__}: "
                                    f"{without_paths(str(exc))}")

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
        for token in list(self._tokens.values()):
            token.cancel()
        with self._wake:
            self._wake.notify_all()
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

    def _resolver(self, owner: str, store: JobStore | None = None):
        """Job id -> result folder of one of ``owner``'s succeeded jobs (else a 422 error).
        A child process passes a ``store`` of its own: SQLite handles must not cross a fork."""
        def resolve(job_id: Any, field: str = "input") -> Path:
            job = (store or self.store).get(str(job_id))
            if job is None or job.owner != owner or job.status != "succeeded" \
                    or not job.result_path:
                raise InvalidParameterError(field, "the id of one of your succeeded jobs",
                                            job_id)
            return Path(job.result_path)
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
            job = self._next()
            if job is None:
                with self._wake:
                    self._wake.wait(1.0)
                continue
            try:
                self._run(job)
            except Exception:  # never let a worker die
                log.exception("job %s crashed the worker", job.id)

    def _next(self) -> Job | None:
        """Start the oldest queued job of the owner served least recently (None: nothing)."""
        with self._submit_lock:
            oldest_first = reversed(self.store.list(status="queued", limit=10_000))
            queued = sorted(oldest_first,  # stable: jobs of the same millisecond keep their order
                            key=lambda j: (self._served.get(j.owner, 0.0), j.created_at))
            for job in queued:
                if self.store.mark_started(job.id):
                    self._served[job.owner] = time.monotonic()
                    return job
        return None

    def _run(self, job: Job) -> None:
        """A worker runs a queued job (already marked started) into its owner's folder."""
        token = self._tokens.setdefault(job.id, CancelToken())
        out_dir = self.owner_dir(job.owner) / job.id
        spec, mopts = self.kinds[job.kind], dict(self.measure_options)

        def work(cb: Callbacks) -> Any:
            resolve = self._resolver(job.owner, JobStore(self.store.path))
            return spec.run(job.config, out_dir, cb, resolve, mopts)

        self._execute(job, work, Callbacks(cancel=token), fallback_path=out_dir)


def summarize(report: Any) -> dict[str, Any]:
    """The few figures a job list shows: accuracy, size, p50 at each batch size timed (a
    fixed-batch model: its own batch only), threads, ratios with their verdicts, warnings."""
    if not isinstance(report, Mapping):
        return {}
    res = report.get("result") or {}
    out: dict[str, Any] = {"operation": report.get("operation"), "method": report.get("method")}
    if res:
        lat = res.get("latency_ms") or {}
        out.update(accuracy=res.get("accuracy"), size_bytes=res.get("size_bytes"),
                   p50_b64_ms=(lat.get("64") or {}).get("p50"),
                   p50_ms={bs: v.get("p50") for bs, v in lat.items()},
                   threads=res.get("threads"))
    out.update({k: v for k, v in (report.get("ratios") or {}).items() if v is not None})
    if report.get("speed_verdicts"):
        out["speed_verdicts"] = report["speed_verdicts"]
    if report.get("warnings"):
        out["warnings"] = list(report["warnings"])
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
