"""Tuning storage across processes: kill and resume (SQLite), two workers on one study
(journal file) and against a real PostgreSQL server started on loopback by tests/postgres.sh."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PG_SCRIPT = ROOT / "tests" / "postgres.sh"

WORKER = textwrap.dedent("""
    import json, pathlib, sys, time
    import torch
    from core.callbacks import Callbacks
    from core.data import load_dataset
    from core.tuning import TuneConfig, tune
    folder, name, storage = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    data = load_dataset("wine")
    import optuna  # noqa: F401
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # pay the one-off import costs now
    (folder / f"ready-{name}").touch()
    while not (folder / "go").exists():
        time.sleep(0.02)
    cfg = TuneConfig(data="wine", model="mlp", sampler="random", epochs=4, n_trials=8,
                     space={"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                            "width": [4, 8, 16, 32]},
                     storage=storage, study_name="shared", heartbeat_s=5)
    other = "b" if name == "a" else "a"

    def meet(event):  # after its first trial, a worker waits for the other's first (<= 60 s)
        if event.get("event") == "trial" and not (folder / f"ran-{name}").exists():
            (folder / f"ran-{name}").touch()
            end = time.time() + 60
            while not (folder / f"ran-{other}").exists() and time.time() < end:
                time.sleep(0.02)

    res = tune(None, data, cfg, out_dir=folder / f"run-{name}", callbacks=Callbacks(
               on_metrics=meet), measure_options={"budget_s": 0.02, "memory": False})
    print("RESULT", json.dumps(res.report["study"]["trials_run"]))
""")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _two_workers(tmp_path: Path, storage: str) -> tuple[list[int], list[int]]:
    """Start two worker processes, release them together, return the trials each ran."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), name, storage],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for name in ("a", "b")]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in ("a", "b")):
        assert time.time() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), procs[0].stderr.read()[-2000:]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    ran = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
        line = next(x for x in out.splitlines() if x.startswith("RESULT "))
        ran.append(json.loads(line.split(" ", 1)[1]))
    return ran[0], ran[1]


def _check_shared(storage: str, ran_a: list[int], ran_b: list[int]) -> None:
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    done = [t.number for t in finished if t.state.name in ("COMPLETE", "PRUNED")]
    assert 8 <= len(done) <= 9  # both workers stop at 8 finished trials (one may overshoot)
    assert ran_a and ran_b, f"both workers ran trials: {ran_a} / {ran_b}"
    assert not set(ran_a) & set(ran_b)
    assert sorted(ran_a + ran_b) == sorted(t.number for t in finished)


def test_two_workers_share_one_journal_study(tmp_path):
    storage = f"journal:///{tmp_path / 'study.log'}"
    a, b = _two_workers(tmp_path, storage)
    from core.tuning import open_storage

    _check_shared(open_storage(storage, heartbeat_s=None), a, b)


def _states(db: Path, n_params: int = 2) -> list[str]:
    """Trial states; a running trial counts only once its first heartbeat and all its
    ``n_params`` parameters are stored (killed before that, it has nothing to retry with)."""
    try:
        with sqlite3.connect(db, timeout=5) as con:
            rows = con.execute(
                "select t.state, "
                "(select count(*) from trial_heartbeats h where h.trial_id = t.trial_id), "
                "(select count(*) from trial_params p where p.trial_id = t.trial_id) "
                "from trials t order by t.number").fetchall()
    except sqlite3.Error:
        return []
    return [s if s != "RUNNING" or (beats and params == n_params) else "STARTING"
            for s, beats, params in rows]


def _frozen_mid_trial(proc: subprocess.Popen, db: Path) -> bool:
    """Stop ``proc`` (SIGSTOP) and say whether it is frozen with 2 finished trials and a running
    one; if not, let it go on. Frozen, the states read cannot change before it is killed
    (read, then killed, a trial could finish and the next start in between)."""
    if _states(db).count("COMPLETE") < 2:
        return False
    import psutil

    proc.send_signal(signal.SIGSTOP)
    while psutil.Process(proc.pid).status() not in (psutil.STATUS_STOPPED,  # signal queued
                                                    psutil.STATUS_ZOMBIE):  # or it ended
        time.sleep(0.001)
    states = _states(db)
    if states.count("COMPLETE") >= 2 and states[-1:] == ["RUNNING"]:
        return True
    proc.send_signal(signal.SIGCONT)
    return False


def test_killed_study_resumes_without_losing_trials(tmp_path):
    """SIGKILL a `studio tune` mid-trial; the next run keeps every finished trial and
    retries the stale one (heartbeat) with the same parameters."""
    db = tmp_path / "studies.db"
    # 200 epochs: a trial lasts long enough to be caught running (at 30, CI's CPU finished
    # all 5 trials between two looks: "finished before it could be killed")
    cfg = {"data": "wine", "model": "mlp", "sampler": "random", "epochs": 200, "n_trials": 5,
           "space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                     "width": [8, 16, 32, 64]},
           "storage": f"sqlite:///{db}", "study_name": "killme", "heartbeat_s": 1}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "core.cli", "tune", "--config", str(tmp_path / "cfg.yaml")]
    first = subprocess.Popen(cmd + ["--out", str(tmp_path / "run1")], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 150
    while not _frozen_mid_trial(first, db):
        assert first.poll() is None, f"finished before it could be killed: {_states(db)}"
        assert time.time() < deadline, f"no trial to interrupt: {_states(db)}"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = _states(db)
    assert not (tmp_path / "run1").exists()
    # The resumed run fails (and retries) the killed trial only once its last heartbeat is
    # older than the grace period (2 × heartbeat_s, compared in whole seconds in SQLite): a
    # restart faster than that (an idle machine) could finish its trials before it does.
    time.sleep(3 * cfg["heartbeat_s"] + 0.5)
    second = subprocess.run(cmd + ["--out", str(tmp_path / "run2")], env=_env(),
                            capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(resumed)" in second.stdout
    report = json.loads((tmp_path / "run2" / "report.json").read_text())
    study = report["study"]
    assert study["resumed"] and study["finished_before"] == before.count("COMPLETE")
    rows = study["trials"]
    for i, state in enumerate(before):  # nothing finished was lost or changed
        if state == "COMPLETE":
            assert rows[i]["state"] == "complete"
    stale = rows[len(before) - 1]
    assert stale["state"] == "fail"
    retried = [r for r in rows[len(before):] if r["params"] == stale["params"]]
    assert retried and retried[0]["state"] == "complete"
    assert study["counts"]["complete"] == 5


# --- PostgreSQL -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (skips only if no binaries exist)."""
    try:
        import psycopg2  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")
    for attempt in range(3):  # a port found free can be taken before postgres binds it
        folder = tempfile.mkdtemp(prefix="studio-pg-")
        proc = subprocess.run(["bash", str(PG_SCRIPT), "start", folder, str(_free_port())],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode == 3:
            pytest.skip(f"PostgreSQL is not installed: {proc.stderr.strip()}")
        if proc.returncode == 0:
            break
        subprocess.run(["bash", str(PG_SCRIPT), "stop", folder], timeout=60)
        subprocess.run(["rm", "-rf", folder])
        assert attempt < 2, proc.stderr
    yield proc.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(PG_SCRIPT), "stop", folder], timeout=60)
    subprocess.run(["rm", "-rf", folder])


def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    a, b = _two_workers(tmp_path, postgres_url)
    from core.tuning import open_storage

    _check_shared(open_storage(postgres_url, heartbeat_s=None), a, b)
    # The same study resumed from this process: nothing to run, every trial is there.
    from core.tuning import TuneConfig, tune

    cfg = TuneConfig(data="wine", model="mlp", sampler="random", epochs=4, n_trials=8,
                     space={"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                            "width": [4, 8, 16, 32]},
                     storage=postgres_url, study_name="shared")
    res = tune(None, None, cfg, out_dir=tmp_path / "again")
    assert res.report["study"]["resumed"] and res.report["study"]["ran_this_time"] == 0
    assert res.report["study"]["storage_kind"] == "rdb"
