"""Run a piece of work in a child process with limits: a crash or a runaway ends that work only.

The studio runs every job this way (``core.jobs``), so a segfault inside a native library, an
allocation beyond the memory limit or an endless loop ends one job with a clear message and the
server keeps serving everyone else. The child is forked (the work may be a closure; nothing is
pickled but its progress messages and its result). Limits come from the environment:

| variable | default | what it bounds |
|---|---|---|
| ``STUDIO_JOB_MEMORY_MB`` | 4096 | address space the job may add (beyond torch's own import) |
| ``STUDIO_JOB_CPU_S`` | 3600 | CPU seconds |
| ``STUDIO_JOB_WALL_S`` | 3600 | wall-clock seconds |
| ``STUDIO_JOB_FILE_MB`` | 2048 | the size of any one file it writes |
| ``STUDIO_JOB_THREADS`` | 1 | torch threads in the job (more only where the parent ran no torch) |
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from core.callbacks import Callbacks, CancelToken
from core.errors import InvalidParameterError, StudioError, without_paths

__all__ = ["JobCrashedError", "Limits", "LimitExceededError", "run_isolated", "survives",
           "torch_import_mb"]

GRACE_S = 10.0  # how long a cancelled job may take to stop on its own before it is killed


class JobCrashedError(StudioError):
    """The job's process died (a native crash, or it was killed); the server is unaffected."""


class LimitExceededError(JobCrashedError):
    """The job went past one of its limits (memory, CPU time, wall time, file size)."""


@dataclass(frozen=True)
class Limits:
    """What one isolated job may use; ``from_env()`` reads the STUDIO_JOB_* variables."""

    memory_mb: float = 4096.0
    cpu_s: float = 3600.0
    wall_s: float = 3600.0
    file_mb: float = 2048.0
    threads: int = 1

    @classmethod
    def from_env(cls, **overrides: Any) -> Limits:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"STUDIO_JOB_{f.name.upper()}")
            if raw is None:
                continue
            kind = int if f.name == "threads" else float
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise InvalidParameterError(f"STUDIO_JOB_{f.name.upper()}", f"a {kind.__name__}",
                                            raw) from None
            if values[f.name] <= 0:
                raise InvalidParameterError(f"STUDIO_JOB_{f.name.upper()}", "> 0", raw)
        return replace(cls(**values), **overrides)


def run_isolated(work: Callable[[Callbacks], Any], callbacks: Callbacks | None = None, *,
                 limits: Limits | None = None) -> Any:
    """Run ``work(callbacks)`` in a forked child under ``limits``; return its result.

    Progress and metrics reach ``callbacks`` as they happen; cancelling ``callbacks.cancel``
    stops the child at its next check (killed after GRACE_S). An error raised by the work is
    raised here (a studio error keeps its class); a child that dies raises JobCrashedError and
    one that passes a limit LimitExceededError, each saying what happened.
    """
    cb = Callbacks.ensure(callbacks)
    cb.check()
    limits = limits or Limits.from_env()
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    room = _library_allowance(int(limits.threads))  # here: a first probe is not the job's time
    proc = ctx.Process(target=_child, args=(work, sender, stop, limits, os.getpid(), room),
                       name="studio-job")
    proc.start()
    sender.close()
    try:
        outcome, killed = _follow(proc, receiver, stop, cb, limits)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receiver.close()
    if outcome is not None:
        kind, payload = outcome
        if kind == "done":
            return payload
        raise _rebuild(payload)
    raise _death(proc.exitcode, killed, limits)


def _follow(proc: Any, receiver: Any, stop: Any, cb: Callbacks, limits: Limits
            ) -> tuple[tuple[str, Any] | None, str | None]:
    """Relay the child's messages until it reports an outcome or dies; enforce wall time."""
    deadline = time.monotonic() + limits.wall_s
    cancelled_at: float | None = None
    while True:
        if receiver.poll(0.1):
            try:
                kind, payload = receiver.recv()
            except (EOFError, OSError):  # the child died without a word
                return None, _reason(cancelled_at, deadline)
            if kind in ("done", "error"):
                return (kind, payload), None
            _relay(cb, kind, payload)
        now = time.monotonic()
        if cb.cancel.cancelled and cancelled_at is None:
            stop.set()
            cancelled_at = now
        if now > deadline or (cancelled_at is not None and now - cancelled_at > GRACE_S):
            proc.kill()
            return None, _reason(cancelled_at, deadline)
        if not proc.is_alive() and not receiver.poll(0):
            return None, _reason(cancelled_at, deadline)


def _reason(cancelled_at: float | None, deadline: float) -> str | None:
    if cancelled_at is not None:
        return "cancelled"
    return "wall" if time.monotonic() > deadline else None


def _relay(cb: Callbacks, kind: str, payload: Any) -> None:
    if kind == "progress" and cb.on_progress is not None:
        cb.on_progress(*payload)
    elif kind == "metrics" and cb.on_metrics is not None:
        cb.on_metrics(payload)


def _child(work: Callable[[Callbacks], Any], sender: Any, stop: Any, limits: Limits,
           parent: int, room: int) -> None:
    """The child's side: apply limits, run the work, send ("done", result) or ("error", …)."""
    _forget_imports_in_progress()
    _die_with_parent(parent)
    _close_network_sockets()
    _apply_limits(limits, room)
    token = CancelToken()
    threading.Thread(target=lambda: (stop.wait(), token.cancel()), daemon=True).start()
    cb = Callbacks(on_progress=lambda f, m: sender.send(("progress", (f, m))),
                   on_metrics=lambda d: sender.send(("metrics", d)), cancel=token)
    try:
        message: tuple[str, Any] = ("done", work(cb))
    except BaseException as exc:  # every outcome goes back to the parent
        message = ("error", _portable(exc, limits))
    try:
        sender.send(message)
    except Exception as exc:  # an unpicklable result
        sender.send(("error", _portable(exc, limits)))
    sender.close()
    sys.stdout.flush()
    sys.stderr.flush()


def _forget_imports_in_progress() -> None:
    """Drop the modules other threads of the server were importing at the fork, with their
    import locks: those threads do not exist here, so the child would wait on the locks forever
    (seen: a compare job building a plotly chart hung while a server thread imported the same
    lazily loaded plotly module). They are imported afresh when needed. Hand-written: CPython
    resets only its global import lock in a forked child, not the per-module ones.
    """
    from importlib import _bootstrap

    locks = getattr(_bootstrap, "_module_locks", {})
    me = threading.get_ident()
    for name, ref in list(locks.items()):
        lock = ref()
        if lock is None:
            continue
        inner = getattr(lock, "lock", None)
        if getattr(lock, "owner", None) not in (None, me) or (inner is not None
                                                            and inner.locked()):
            locks.pop(name, None)
            sys.modules.pop(name, None)


def _close_network_sockets() -> None:
    """Drop the child's copies of the server's TCP sockets (listener and client connections).

    A forked child holds them open: a keep-alive connection the server closes while the job
    runs then stays open for the browser, which sends its next request (e.g. Stop) into a
    socket nobody reads (seen here: Chromium's Stop hung until the job ended). The job talks
    to its parent over a pipe only. Hand-written: Python has no close-on-fork flag.
    """
    import socket
    import stat

    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        family = sock.family
        sock.detach()
        if family in (socket.AF_INET, socket.AF_INET6):
            os.close(fd)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this child when the server dies (else it would keep the server's
    listening socket and its CPU); no-op elsewhere."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: sent when the forking thread ends
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


# The server no longer imports torch; a job that needs it maps it after the limit is set.
# That is mostly shared code, not the job's work, so the limit leaves room for it: the room
# a fresh interpreter needs to import torch, measured once per machine and torch version
# (torch_import_mb). This constant is only the fallback where that probe cannot run; it is
# one measurement on the 2-vCPU dev machine (VmSize 14 -> 692 MB, torch + onnxruntime).
_TORCH_ADDRESS_SPACE_MB = 768
_IMPORT_SCHEMA = "optimization-studio/torch-import/v1"
_PROBING = threading.Lock()
_PROBE_FAILED: set[str] = set()  # keys whose probe failed in this process: not tried again
# Run by a fresh interpreter: VmSize before and VmPeak after `import torch`, in kB.
_PROBE = ("def vm(key):\n"
          "    with open('/proc/self/status') as f:\n"
          "        return next(int(l.split()[1]) for l in f if l.startswith(key + ':'))\n"
          "before = vm('VmSize')\n"
          "import torch\n"
          "print(before, vm('VmPeak'))\n")


def _import_key(threads: int) -> dict[str, Any]:
    """What the size of torch's import depends on: platform, Python, torch's version, cores and
    the job's OpenMP threads (each maps its own stack: ~40 MB a thread here)."""
    import platform
    from importlib import metadata

    try:
        torch_version: str | None = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = None
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch_version,
            "cores": os.cpu_count(), "threads": int(threads)}


def _probe_torch_import(threads: int, timeout_s: float = 120.0) -> float | None:
    """MB of address space a fresh interpreter at ``threads`` OpenMP threads adds by importing
    torch; None if that failed."""
    import subprocess

    try:
        env = {**os.environ, "OMP_NUM_THREADS": str(int(threads))}  # as the job will run
        run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=timeout_s, env=env)
        before, peak = (int(v) for v in run.stdout.split()[-2:])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return (peak - before) / 1024 if run.returncode == 0 and peak > before else None


def torch_import_mb(*, threads: int = 1) -> float:
    """Address space (MB) a job at ``threads`` keeps for importing torch: measured once per
    machine, torch version and thread count in a fresh child (VmPeak after ``import torch``
    minus VmSize before) and cached beside the GEMM peaks; ``_TORCH_ADDRESS_SPACE_MB`` where
    the probe fails."""
    from core.measure._peak import read_cached, write_cached

    fields = _import_key(threads)

    def cached() -> float | None:
        found = read_cached("torch-import", _IMPORT_SCHEMA, fields) or {}
        value = found.get("address_space_mb")
        return float(value) if isinstance(value, (int, float)) else None

    if (room := cached()) is not None:
        return room
    with _PROBING:  # one probe at a time: jobs starting together wait for its figure
        if (room := cached()) is not None:
            return room
        key = repr(sorted(fields.items()))
        failed = key in _PROBE_FAILED or not fields["torch"]
        measured = None if failed else _probe_torch_import(threads)
        if measured is None:
            _PROBE_FAILED.add(key)
            return float(_TORCH_ADDRESS_SPACE_MB)
        write_cached("torch-import", _IMPORT_SCHEMA, fields, {"address_space_mb": measured})
        return measured


def _library_allowance(threads: int) -> int:
    """Address space kept for a torch import the job has still to make (0 when loaded)."""
    return 0 if "torch" in sys.modules else int(torch_import_mb(threads=threads) * 2**20)


def _apply_limits(limits: Limits, room: int) -> None:
    """Set the job's rlimits; ``room`` bytes of address space are kept for a torch import."""
    import resource

    import psutil

    start = psutil.Process().memory_info().vms + room
    address = int(start + limits.memory_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (address, address))
    cpu = int(time.process_time() + limits.cpu_s)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    size = int(limits.file_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if "torch" in sys.modules:  # a forked OpenMP pool hangs unless the child starts at 1 thread
        sys.modules["torch"].set_num_threads(int(limits.threads))
    os.environ["OMP_NUM_THREADS"] = str(int(limits.threads))


_OUT_OF_MEMORY = ("can't allocate memory", "bad_alloc", "out of memory", "failed to allocate")


def _portable(exc: BaseException, limits: Limits) -> tuple[str, str, str]:
    """(module, class name, message) of an error: rebuilt in the parent without pickling it."""
    text = str(exc)
    if isinstance(exc, MemoryError) or any(s in text.lower() for s in _OUT_OF_MEMORY):
        return ("core.isolation", "LimitExceededError",
                f"The job exceeded its memory limit ({limits.memory_mb:.0f} MB; "
                "STUDIO_JOB_MEMORY_MB). Try a smaller model, batch or data set.")
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG: RLIMIT_FSIZE
        return ("core.isolation", "LimitExceededError",
                f"The job tried to write a file over {limits.file_mb:.0f} MB "
                "(STUDIO_JOB_FILE_MB).")
    if not isinstance(exc, StudioError):  # a library's words may name server paths
        text = without_paths(text)
    return (type(exc).__module__, type(exc).__qualname__, text)


def _rebuild(payload: tuple[str, str, str]) -> BaseException:
    """The child's error as an exception of the same class where it is a studio error."""
    module, name, text = payload
    cls = getattr(sys.modules.get(module), name, None)
    if isinstance(cls, type) and issubclass(cls, StudioError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, text)
        return exc
    return RuntimeError(f"{name}: {text}")


_SIGNALS = {signal.SIGSEGV: "a segmentation fault", signal.SIGABRT: "an abort",
            signal.SIGBUS: "a bus error", signal.SIGILL: "an illegal instruction",
            signal.SIGFPE: "a floating-point exception"}


def _death(exitcode: int | None, killed: str | None, limits: Limits) -> StudioError:
    """A clear message for a child that ended without reporting an outcome."""
    from core.errors import CancelledError

    if killed == "cancelled":
        return CancelledError("The job was cancelled.")
    if killed == "wall":
        return LimitExceededError(f"The job exceeded its time limit ({limits.wall_s:.0f} s; "
                                  "STUDIO_JOB_WALL_S) and was stopped.")
    sig = -exitcode if exitcode is not None and exitcode < 0 else None
    if sig == signal.SIGXCPU:
        return LimitExceededError(f"The job exceeded its CPU time limit ({limits.cpu_s:.0f} s; "
                                  "STUDIO_JOB_CPU_S) and was stopped.")
    if sig == signal.SIGKILL:
        return JobCrashedError("The job was killed by the system (most likely it ran out of "
                               "memory). The server is fine; try a smaller model or data set.")
    if sig in _SIGNALS:
        return JobCrashedError(f"The job crashed with {_SIGNALS[sig]} inside a native library "
                               "(e.g. ONNX Runtime or torch) on this model. The server is fine; "
                               "this model and method cannot run together here.")
    return JobCrashedError(f"The job's process ended unexpectedly (exit code {exitcode}).")


def survives(fn: Callable[[], Any], message: str, *, limits: Limits | None = None) -> None:
    """Run ``fn()`` once in a child; if that child crashes, raise UnsupportedModelError
    (``message``) here, so a native step that can segfault never takes this process down."""
    from core.errors import UnsupportedModelError

    try:
        run_isolated(lambda cb: fn() and None, limits=limits or Limits(wall_s=300))
    except JobCrashedError as exc:
        if isinstance(exc, LimitExceededError):
            raise
        raise UnsupportedModelError(f"{message}. It crashed a test process; nothing else was "
                                    "affected.") from None
