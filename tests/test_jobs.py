"""Jobs: the SQLite store survives a restart; the pool queues, caps, cancels and cleans up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.errors import InvalidParameterError
from core.jobs import BusyError, JobKind, JobManager, JobNotFoundError, JobStore


def _slow_kind() -> JobKind:
    """A test kind: writes through staging, checks the cancel token every 10 ms; runs
    ``seconds``, and until the file ``until`` exists when given."""

    def validate(config, resolve):
        if not isinstance(config.get("seconds", 0), (int, float)):
            raise InvalidParameterError("seconds", "a number", config.get("seconds"))
        return {"seconds": float(config.get("seconds", 0.1)), "until": config.get("until")}

    def run(config, out_dir, cb, resolve, mopts):
        from core.artifacts import staging

        with staging(out_dir) as tmp:
            (tmp / "half-written.bin").write_bytes(b"x" * 1000)
            end = time.monotonic() + config["seconds"]
            while time.monotonic() < end or (config["until"]
                                             and not Path(config["until"]).exists()):
                cb.progress(min(1.0, 1 - (end - time.monotonic()) / max(config["seconds"],
                                                                        1e-9)), "sleeping")
                time.sleep(0.01)
            (tmp / "report.json").write_text('{"result": {"accuracy": 0.5}}')
        return {"operation": "sleep", "result": {"accuracy": 0.5}}

    return JobKind("sleep", "sleep a while", validate, run)


def _manager(root: Path, **kw) -> JobManager:
    return JobManager(root, kinds={"sleep": _slow_kind()}, **kw)


def test_store_marks_unfinished_jobs_interrupted_on_restart(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = store.create("train", "alice", {"epochs": 1})
    b = store.create("train", "alice", {"epochs": 1})
    c = store.create("train", "bob", {})
    store.mark_started(a.id)
    store.finish(c.id, "succeeded", result_path="/x", summary={"accuracy": 0.9})
    store.close()
    assert len(a.id) > 20 and a.id != b.id  # unguessable ids
    again = JobStore(tmp_path / "jobs.sqlite")
    assert again.interrupt_unfinished() == 2
    assert again.get(a.id).status == "interrupted"
    assert "running" in again.get(a.id).error
    assert again.get(b.id).status == "interrupted"
    done = again.get(c.id)
    assert done.status == "succeeded" and done.summary == {"accuracy": 0.9}
    assert [j.id for j in again.list("bob")] == [c.id]


def test_pool_runs_caps_and_isolates_owners(tmp_path):
    mgr = _manager(tmp_path, queue_limit=3, per_owner=2)
    # Held until the caps are checked: a job that had ended would free its place.
    held = {"until": str(tmp_path / "go")}
    try:
        j1 = mgr.submit("sleep", "alice", {"seconds": 0.3, **held})
        j2 = mgr.submit("sleep", "alice", {"seconds": 0.05, **held})
        with pytest.raises(BusyError, match="already have 2"):
            mgr.submit("sleep", "alice", {"seconds": 0.05})
        j3 = mgr.submit("sleep", "bob", {"seconds": 0.05, **held})
        with pytest.raises(BusyError, match="busy"):  # bob has one; the queue is full
            mgr.submit("sleep", "bob", {})
        (tmp_path / "go").touch()
        j4 = mgr.submit("sleep", "carol", {"seconds": 0.01})  # a newcomer is still admitted
        with pytest.raises(JobNotFoundError):
            mgr.get(j1.id, "bob")
        with pytest.raises(InvalidParameterError, match="kind"):
            mgr.submit("nope", "alice", {})
        with pytest.raises(InvalidParameterError, match="seconds"):
            mgr.submit("sleep", "dave", {"seconds": "long"})
        for job, owner in ((j1, "alice"), (j2, "alice"), (j3, "bob"), (j4, "carol")):
            done = mgr.wait(job.id, owner, timeout=120)
            assert done.status == "succeeded", done
            assert done.progress == 1.0 and done.duration_s is not None
            assert (Path(done.result_path) / "report.json").is_file()
        metrics = mgr.metrics("alice")
        assert metrics["completed"] == 2 and metrics["best_accuracy"] == 0.5
        assert metrics["mean_duration_s"] > 0
    finally:
        mgr.shutdown()


def test_cancel_stops_the_job_itself_and_leaves_nothing(tmp_path, monkeypatch):
    # No kill after a grace period: only the job's own check can end it before its 120 s.
    monkeypatch.setattr("core.isolation.GRACE_S", 1e6)
    mgr = _manager(tmp_path, per_owner=2)
    try:
        running = mgr.submit("sleep", "alice", {"seconds": 120})
        queued = mgr.submit("sleep", "alice", {"seconds": 120})
        end = time.monotonic() + 60
        while mgr.get(running.id, "alice").status != "running" and time.monotonic() < end:
            time.sleep(0.02)
        assert mgr.cancel(queued.id, "alice").status == "cancelled"  # never started
        mgr.cancel(running.id, "alice")
        done = mgr.wait(running.id, "alice", timeout=60)  # bounds a hang only
        assert done.status == "cancelled", done
        owner_dir = mgr.owner_dir("alice")
        leftovers = list(owner_dir.rglob("*")) if owner_dir.exists() else []
        assert leftovers == []  # staging removed the half-written folder
    finally:
        mgr.shutdown()


def test_real_train_job_then_quantize_chain(tmp_path):
    mgr = JobManager(tmp_path, measure_options={"budget_s": 0.02, "memory": False})
    try:
        with pytest.raises(InvalidParameterError, match="epochs"):
            mgr.submit("train", "alice", {"epochs": 0})
        with pytest.raises(InvalidParameterError, match="input"):
            mgr.submit("quantize", "alice", {"input": "job-missing"})
        train = mgr.submit("train", "alice", {"model": "mlp", "data": "wine", "epochs": 2})
        done = mgr.wait(train.id, "alice", timeout=120)
        assert done.status == "succeeded", done.error
        with pytest.raises(InvalidParameterError, match="input"):  # not bob's job
            mgr.submit("quantize", "bob", {"input": train.id})
        q = mgr.submit("quantize", "alice", {"input": train.id, "method": "ort-dynamic-int8",
                                          "options": {"calibration_size": 64}})
        qd = mgr.wait(q.id, "alice", timeout=120)
        assert qd.status == "succeeded", qd.error
        assert qd.summary["operation"] == "quantize" and qd.summary["size_reduction"] > 1
        with pytest.raises(InvalidParameterError, match="rounds"):
            mgr.submit("scale", "alice", {"config": {"rounds": 0}})
        sc = mgr.submit("scale", "alice", {"config": {"client_counts": [4, 8], "rounds": 2}})
        sd = mgr.wait(sc.id, "alice", timeout=120)
        assert sd.status == "succeeded", sd.error
        assert sd.summary["operation"] == "scale"
    finally:
        mgr.shutdown()


def test_interrupted_tuning_job_resumes_its_study(tmp_path):
    import json

    from core.jobs import NotResumableError

    mgr = JobManager(tmp_path, measure_options={"budget_s": 0.02, "memory": False})
    try:
        with pytest.raises(InvalidParameterError, match="storage"):
            mgr.submit("tune", "alice", {"config": {"storage": "sqlite:////etc/x.db"}})
        cfg = {"model": "mlp", "data": "wine", "epochs": 1, "sampler": "random",
               "latency_budget_s": 0.01}
        first = mgr.submit("tune", "alice", {"config": {**cfg, "n_trials": 2}})
        assert mgr.wait(first.id, "alice", timeout=120).status == "succeeded"
        # A job that asked for more trials of that study, cut off by a restart: queued while
        # no worker runs (a running worker could start it first), then the server restarts.
        mgr.shutdown()
        store = JobStore(tmp_path / "jobs.sqlite")
        cut = store.create("tune", "alice", {"config": {**cfg, "n_trials": 4},
                                             "resume_of": first.id})
        store.close()
        mgr = JobManager(tmp_path, measure_options={"budget_s": 0.02, "memory": False})
        assert mgr.get(cut.id, "alice").status == "interrupted"
        with pytest.raises(NotResumableError):
            mgr.resume(first.id, "alice")  # succeeded: nothing to resume
        with pytest.raises(JobNotFoundError):
            mgr.resume(cut.id, "bob")
        again = mgr.resume(cut.id, "alice")
        assert again.config["resume_of"] == first.id
        done = mgr.wait(again.id, "alice", timeout=120)
        assert done.status == "succeeded", done.error
        assert Path(done.result_path).name == first.id  # the study's own folder
        study = json.loads((Path(done.result_path) / "report.json").read_text())["study"]
        assert study["resumed"] and study["finished_before"] == 2
        assert study["ran_this_time"] == 2 and study["n_trials"] == 4
    finally:
        mgr.shutdown()


def test_old_finished_jobs_expire_with_their_folders(tmp_path):
    mgr = JobManager(tmp_path)
    try:
        old = mgr.store.create("train", "alice", {})
        folder = mgr.owner_dir("alice") / old.id
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"x")
        mgr.store.finish(old.id, "succeeded", result_path=str(folder))
        mgr.store.update(old.id, finished_at="2000-01-01T00:00:00.000+00:00")
        running = mgr.store.create("train", "alice", {})
        mgr.store.mark_started(running.id)
        assert mgr.expire(3600) == 1
        assert mgr.store.get(old.id) is None and not folder.exists()
        assert mgr.store.get(running.id) is not None  # unfinished work is never expired
    finally:
        mgr.shutdown()


def test_jobs_of_one_millisecond_list_newest_first_and_run_in_order(tmp_path, monkeypatch):
    """created_at has millisecond resolution: jobs submitted within one are listed newest first
    by every listing, and still run in the order they were submitted."""
    monkeypatch.setattr("core.jobs._store._now", lambda: "2026-01-01T00:00:00.000+00:00")
    ran, gate = tmp_path / "ran.txt", tmp_path / "go"

    def note(config, out_dir, cb, resolve, mopts):
        while not gate.exists():  # until all three are queued
            time.sleep(0.01)
        with open(ran, "a") as f:
            f.write(config["name"] + "\n")
        return {"operation": "note", "result": {"accuracy": 1.0}}

    kind = JobKind("note", "note", lambda config, resolve: dict(config), note)
    mgr = JobManager(tmp_path / "root", kinds={"note": kind}, per_owner=3)
    try:
        jobs = [mgr.submit("note", "alice", {"name": name}) for name in "abc"]
        newest_first = [j.id for j in reversed(jobs)]
        assert [j.id for j in mgr.store.list()] == newest_first
        assert [j.id for j in mgr.list("alice")] == newest_first
        gate.touch()
        for job in jobs:
            assert mgr.wait(job.id, "alice", timeout=60).status == "succeeded"
    finally:
        mgr.shutdown()
    assert ran.read_text().split() == ["a", "b", "c"]
