"""Isolated jobs: a crash, an out-of-memory or a runaway ends one job; the caller keeps going."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from core.callbacks import Callbacks
from core.errors import CancelledError, InvalidParameterError, StudioError
from core.isolation import JobCrashedError, LimitExceededError, Limits, run_isolated
from core.jobs import JobKind, JobManager

SMALL = Limits(memory_mb=300, wall_s=30, cpu_s=30)


def test_result_progress_and_metrics_come_back():
    seen: list = []
    cb = Callbacks(on_progress=lambda f, m: seen.append((f, m)), on_metrics=seen.append)

    def work(c):
        c.progress(0.5, "half")
        c.metrics({"loss": 1.25})
        return {"pid": os.getpid(), "value": 42}

    out = run_isolated(work, cb, limits=SMALL)
    assert out["value"] == 42 and out["pid"] != os.getpid()
    assert (0.5, "half") in seen and {"loss": 1.25} in seen


def test_a_studio_error_keeps_its_class_and_message():
    def work(c):
        raise InvalidParameterError("sparsity", "a float in (0, 1)", 1.5)

    with pytest.raises(InvalidParameterError, match="sparsity.*1.5"):
        run_isolated(work, limits=SMALL)


@pytest.mark.parametrize("crash, said", [
    (lambda: os.abort(), "an abort"),
    (lambda: __import__("ctypes").string_at(0), "a segmentation fault"),
])
def test_a_native_crash_is_a_clear_error(crash, said):
    with pytest.raises(JobCrashedError, match=said) as info:
        run_isolated(lambda c: crash(), limits=SMALL)
    assert "server is fine" in str(info.value)


def test_memory_beyond_the_limit_is_refused():
    def work(c):
        return len(bytearray(2048 * 2**20))  # beyond the limit and torch's import room

    with pytest.raises(LimitExceededError, match="memory limit .300 MB"):
        run_isolated(work, limits=SMALL)


def test_a_small_limit_still_lets_the_job_import_torch(tmp_path):
    """A server without torch (as the studio runs) keeps room for the job's torch import: the
    room is measured once in a fresh child, cached, and read back by the next job."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from core import isolation\n"
              "def work(c):\n"
              "    import torch\n"
              "    return float(torch.ones(4, 4).sum())\n"
              "limits = isolation.Limits(memory_mb=300, wall_s=120)\n"
              "assert isolation.run_isolated(work, limits=limits) == 16\n"
              "assert 'torch' not in sys.modules\n"
              "isolation._PROBE = 'raise SystemExit(3)'  # the next job reads the cache\n"
              "print(isolation.torch_import_mb())\n")
    env = {**os.environ, "STUDIO_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1],
                         env=env, check=True, timeout=300, capture_output=True, text=True)
    (cached,) = tmp_path.glob("torch-import-*.json")
    room = __import__("json").loads(cached.read_text())["address_space_mb"]
    assert 100 < room < 4096  # torch maps hundreds of MB, never gigabytes
    assert float(out.stdout.split()[-1]) == room


def test_torch_import_room_falls_back_to_the_constant_when_the_probe_fails(tmp_path,
                                                                          monkeypatch):
    from core import isolation

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(isolation, "_PROBE", "raise SystemExit(3)")
    monkeypatch.setattr(isolation, "_PROBE_FAILED", set())
    assert isolation.torch_import_mb(threads=3) == isolation._TORCH_ADDRESS_SPACE_MB
    assert list(tmp_path.iterdir()) == []  # a failed probe is not cached


def test_wall_time_limit_stops_a_runaway():
    start = time.monotonic()
    with pytest.raises(LimitExceededError, match="time limit"):
        run_isolated(lambda c: time.sleep(60), limits=Limits(wall_s=1))
    assert time.monotonic() - start < 15


def test_cancel_stops_a_cooperative_job_and_kills_a_deaf_one(monkeypatch):
    cb = Callbacks()

    def polite(c):
        while True:
            c.check()
            time.sleep(0.01)

    import threading

    threading.Timer(0.5, cb.cancel.cancel).start()
    with pytest.raises(CancelledError):
        run_isolated(polite, cb, limits=SMALL)
    monkeypatch.setattr("core.isolation.GRACE_S", 0.5)
    deaf = Callbacks()
    threading.Timer(0.5, deaf.cancel.cancel).start()
    start = time.monotonic()
    with pytest.raises(CancelledError):
        run_isolated(lambda c: time.sleep(60), deaf, limits=SMALL)
    assert time.monotonic() - start < 15


def _kind(name: str, run) -> JobKind:
    return JobKind(name, name, lambda config, resolve: dict(config), run)


def test_a_crashing_job_fails_and_the_manager_serves_the_next(tmp_path):
    def abort(config, out_dir, cb, resolve, mopts):
        os.abort()

    def fine(config, out_dir, cb, resolve, mopts):
        return {"operation": "fine", "result": {"accuracy": 1.0}}

    mgr = JobManager(tmp_path, kinds={"abort": _kind("abort", abort), "fine": _kind("fine", fine)},
                     limits=SMALL)
    try:
        bad = mgr.submit("abort", "alice", {})
        done = mgr.wait(bad.id, "alice", timeout=120)
        assert done.status == "failed" and "crashed with an abort" in done.error
        good = mgr.submit("fine", "alice", {})
        assert mgr.wait(good.id, "alice", timeout=120).status == "succeeded"
    finally:
        mgr.shutdown()


def test_the_queue_is_fair_across_owners(tmp_path):
    """A newcomer's job runs before a busy owner's second one, though submitted later."""
    order: list[str] = []

    gate = tmp_path / "go"

    def note(config, out_dir, cb, resolve, mopts):
        while config.get("held") and not gate.exists():  # until both others are queued
            time.sleep(0.01)
        return {"operation": "note", "who": config["who"]}

    mgr = JobManager(tmp_path, kinds={"note": _kind("note", note)}, per_owner=3, limits=SMALL)
    try:
        first = mgr.submit("note", "hog", {"who": "hog-1", "held": True})
        end = time.monotonic() + 20
        while mgr.get(first.id, "hog").status != "running" and time.monotonic() < end:
            time.sleep(0.02)
        second = mgr.submit("note", "hog", {"who": "hog-2"})
        newcomer = mgr.submit("note", "new", {"who": "new-1"})
        gate.touch()
        for job, who in ((first, "hog"), (second, "hog"), (newcomer, "new")):
            assert mgr.wait(job.id, who, timeout=120).status == "succeeded"
        order = sorted([(mgr.get(second.id, "hog").started_at, "hog-2"),
                        (mgr.get(newcomer.id, "new").started_at, "new-1")])
        assert [who for _, who in order] == ["new-1", "hog-2"]
    finally:
        mgr.shutdown()


def test_studio_errors_are_still_studio_errors():
    assert issubclass(JobCrashedError, StudioError) and issubclass(LimitExceededError,
                                                                   JobCrashedError)


def test_survives_turns_a_crash_into_a_clear_refusal():
    from core.errors import UnsupportedModelError
    from core.isolation import survives

    survives(lambda: 1, "never said")
    with pytest.raises(UnsupportedModelError, match="cannot load this"):
        survives(lambda: os.abort(), "The runtime cannot load this")


def test_a_job_dies_with_its_server(tmp_path):
    """A server killed with SIGKILL takes its running job with it (no orphan keeps its port)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "server.py"
    pid_file = tmp_path / "child.pid"
    script.write_text(
        "import os, time, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "from core.isolation import Limits, run_isolated\n"
        "def work(cb):\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "run_isolated(work, limits=Limits(wall_s=120))\n")
    server = subprocess.Popen([sys.executable, str(script)])
    end = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < end, "the job never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    server.send_signal(signal.SIGKILL)
    server.wait()
    end = time.monotonic() + 10
    while _alive(child) and time.monotonic() < end:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_is_heard_while_the_job_chatters(tmp_path, monkeypatch):
    """A job that reports progress all the time still hears the cancel itself (it is not
    killed: there is no grace-period kill here, and the job says it stopped)."""
    import threading

    monkeypatch.setattr("core.isolation.GRACE_S", 1e6)
    heard = tmp_path / "heard"
    cb = Callbacks()

    def chatty(c):
        try:
            while True:
                c.progress(0.5, "busy")
                time.sleep(0.005)
        except CancelledError:
            heard.touch()
            raise

    threading.Timer(0.5, cb.cancel.cancel).start()
    with pytest.raises(CancelledError):
        run_isolated(chatty, cb, limits=SMALL)
    assert heard.exists()


def test_a_job_does_not_hold_the_servers_connections_open():
    """A closed server connection must really close while a job runs (a forked child keeping
    it open made the browser send Stop into a socket nobody read); the job's pipe still works."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()

    def work(cb):
        def is_open(fd: int) -> bool:
            try:
                os.fstat(fd)
                return True
            except OSError:
                return False

        cb.progress(0.5, "checked")
        return {fd: is_open(fd) for fd in (server.fileno(), conn.fileno())}

    try:
        assert run_isolated(work) == {server.fileno(): False, conn.fileno(): False}
        conn.close()  # the server's close reaches the client: EOF, not a hang
        client.settimeout(5)
        assert client.recv(1) == b""
    finally:
        for sock in (client, conn, server):
            sock.close()


def test_a_job_imports_a_module_another_thread_was_importing_at_the_fork(tmp_path):
    """A server thread mid-import when a job is forked (a chart's lazily loaded plotly module)
    left the child waiting forever on that module's import lock; the child imports it afresh."""
    import importlib
    import sys
    import threading

    name = f"studio_slow_import_{os.getpid()}"
    gate = tmp_path / "hold"
    (tmp_path / f"{name}.py").write_text(
        "import os, time\n"
        f"while os.getpid() == {os.getpid()} and os.path.exists({str(gate)!r}):\n"
        "    time.sleep(0.01)  # the server's thread is held here, mid-import\n"
        "VALUE = 42\n")
    gate.touch()
    sys.path.insert(0, str(tmp_path))
    importer = threading.Thread(target=importlib.import_module, args=(name,), daemon=True)
    try:
        importer.start()
        end = time.monotonic() + 60  # bounds a hang only
        while name not in sys.modules:  # the import has begun and holds its lock
            assert time.monotonic() < end, "the import never started"
            time.sleep(0.01)
        work = lambda c: importlib.import_module(name).VALUE  # noqa: E731
        assert run_isolated(work, limits=Limits(memory_mb=300, wall_s=30)) == 42
    finally:
        gate.unlink()
        importer.join(30)
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
