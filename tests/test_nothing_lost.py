"""Nothing is lost: --out / out_dir never deletes a folder the studio did not write, a variant
never replaces its parent, a study whose trials all failed is a failure, and staging folders
left by a killed process are cleaned (only those the studio wrote)."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST_MEASURE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fast_cli(monkeypatch):
    """``core.cli.run`` with the short timing budget; returns (run, collected errors)."""
    import core.measure
    from core.cli import run

    monkeypatch.setattr(core.measure, "measure_many",
                        functools.partial(core.measure.measure_many, **FAST_MEASURE))
    errors: list[str] = []
    return functools.partial(run, err=errors.append), errors


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_out_on_a_folder_with_someone_elses_files_is_refused_untouched(tmp_path, fast_cli):
    run, errors = fast_cli
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "notes.txt").write_text("my thesis")
    (work / "src" / "main.py").write_text("print('hi')")
    before = _snapshot(work)
    code = run(["train", "--model", "mlp", "--data", "wine", "--epochs", "1",
                "--out", str(work)])
    assert code == 2
    assert "'work' already exists and is not a studio run folder" in errors[-1]
    assert str(tmp_path) not in errors[-1]  # the message names the folder, not a path
    assert _snapshot(work) == before and not (tmp_path / "work.partial").exists()


def test_python_out_dir_refuses_a_user_folder_and_a_user_partial(tmp_path):
    from core.artifacts import OutputFolderError
    from core.runs import train_baseline
    from core.training import TrainConfig

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(OutputFolderError, match="not a studio run folder"):
        train_baseline("mlp", "wine", out_dir=tmp_path / "mine",
                       config=TrainConfig(epochs=1), measure_options=FAST_MEASURE)
    assert (tmp_path / "mine" / "data.csv").read_text() == "a,b\n1,2\n"
    # A user's own folder that happens to be called '<out>.partial' is never deleted either.
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "keep.txt").write_text("keep")
    with pytest.raises(OutputFolderError, match="not written by the studio"):
        train_baseline("mlp", "wine", out_dir=tmp_path / "run",
                       config=TrainConfig(epochs=1), measure_options=FAST_MEASURE)
    assert (tmp_path / "run.partial" / "keep.txt").read_text() == "keep"


def test_empty_folder_is_fine_and_overwrite_replaces_only_a_run_folder(tmp_path, fast_cli):
    from core.artifacts import OutputFolderError
    from core.runs import train_baseline
    from core.training import TrainConfig

    out = tmp_path / "base"
    out.mkdir()  # empty: fine
    first = train_baseline("mlp", "wine", out_dir=out, config=TrainConfig(epochs=1),
                           measure_options=FAST_MEASURE).report
    assert json.loads((out / "report.json").read_text())["created_at"] == first["created_at"]
    with pytest.raises(OutputFolderError, match="--overwrite"):
        train_baseline("mlp", "wine", out_dir=out, config=TrainConfig(epochs=1, seed=1),
                       measure_options=FAST_MEASURE)
    assert json.loads((out / "report.json").read_text())["seed"] == 0
    (out / "notes.txt").write_text("mine, not the studio's")  # --overwrite keeps it: refused
    with pytest.raises(OutputFolderError, match="did not write there.*'notes.txt'"):
        train_baseline("mlp", "wine", out_dir=out, config=TrainConfig(epochs=1, seed=1),
                       measure_options=FAST_MEASURE, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine, not the studio's"
    (out / "notes.txt").unlink()
    second = train_baseline("mlp", "wine", out_dir=out, config=TrainConfig(epochs=1, seed=1),
                            measure_options=FAST_MEASURE, overwrite=True).report
    assert second["seed"] == 1
    assert json.loads((out / "report.json").read_text())["seed"] == 1
    # The CLI: without --overwrite exit 2 (untouched), with it the run folder is replaced.
    run, errors = fast_cli
    args = ["train", "--model", "mlp", "--data", "wine", "--epochs", "1", "--seed", "2",
            "--out", str(out)]
    assert run(args) == 2 and "--overwrite" in errors[-1]
    assert json.loads((out / "report.json").read_text())["seed"] == 1
    assert run([*args, "--overwrite"]) == 0, errors
    assert json.loads((out / "report.json").read_text())["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no .partial, no .old


def test_a_variant_never_overwrites_its_parent(baseline_dir, tmp_path, fast_cli):
    import shutil

    from core.artifacts import OutputFolderError
    from core.quantization import quantize

    base = tmp_path / "base"
    shutil.copytree(baseline_dir, base)
    before = _snapshot(base)
    run, errors = fast_cli
    for out in (base, base / "q"):
        code = run(["quantize", "--model", str(base), "--method", "ort-dynamic-int8",
                    "--out", str(out), "--overwrite"])
        assert code == 2 and "never overwrites its parent" in errors[-1], errors
    code = run(["quantize", "--model", str(base / "model.onnx"), "--method", "ort-dynamic-int8",
                "--out", str(base), "--overwrite"])
    assert code == 2 and "never overwrites its parent" in errors[-1], errors
    with pytest.raises(OutputFolderError, match="never overwrites its parent"):
        quantize(base, None, "ort-dynamic-int8", out_dir=base, overwrite=True,
                 measure_options=FAST_MEASURE)
    assert _snapshot(base) == before


def _fail(*args, **kwargs):
    raise ValueError("boom: widths do not fit")


def test_a_study_whose_every_trial_failed_is_a_failure(tmp_path, monkeypatch, fast_cli):
    from core.tuning import StudyFailedError, TuneConfig, tune
    from core.tuning._objective import TrialObjective

    monkeypatch.setattr(TrialObjective, "_run", _fail)
    cfg = TuneConfig(data="wine", model="mlp", space={"width": [4, 8]}, epochs=1, n_trials=2,
                     sampler="random", storage=f"sqlite:///{tmp_path / 'st.db'}")
    with pytest.raises(StudyFailedError, match=r"All 2 trial\(s\).*trial 0.*boom"):
        tune(None, None, cfg, out_dir=tmp_path / "study", measure_options=FAST_MEASURE)
    assert not (tmp_path / "study").exists()
    run, errors = fast_cli
    code = run(["tune", "--data", "wine", "--model", "mlp", "--n-trials", "1",
                "--sampler", "random", "--out", str(tmp_path / "cli")])
    assert code == 1 and "boom: widths do not fit" in errors[-1], errors
    assert not (tmp_path / "cli").exists()


def test_orphan_partial_folders_are_cleaned_only_if_the_studio_wrote_them(tmp_path):
    import time

    from core.artifacts import clean_orphans

    code = ("import sys, time; from core.artifacts import staging\n"
            "with staging(sys.argv[1]) as tmp:\n"
            "    (tmp / 'model.onnx').write_bytes(b'half')\n"
            "    time.sleep(120)\n")
    run = tmp_path / "jobs" / "run1"
    writer = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=ROOT)
    try:
        end = time.monotonic() + 60
        while not (run.with_name("run1.partial") / "model.onnx").exists():
            assert time.monotonic() < end and writer.poll() is None
            time.sleep(0.05)
        (tmp_path / "mine.partial").mkdir()  # a user's folder with that suffix
        (tmp_path / "mine.partial" / "thesis.txt").write_text("keep")
        assert clean_orphans(tmp_path) == []  # its writer is still running
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        writer.kill()
    assert run.with_name("run1.partial").is_dir()  # a kill leaves it behind...
    assert clean_orphans(tmp_path) == ["run1.partial"]  # ...until the next start-up
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == []
    assert (tmp_path / "mine.partial" / "thesis.txt").read_text() == "keep"


def test_staging_left_on_another_host_is_cleaned_once_stale(tmp_path):
    """A Space restarts in a new container (another host name): its old staging folders go
    once they are older than the longest a run may take; fresh ones are kept."""
    import os
    import time

    from core.artifacts import clean_orphans
    from core.artifacts._report import staging_marker

    for name, age_h in (("old", 48), ("new", 1)):
        tmp = tmp_path / f"{name}.partial"
        (tmp / "sub").mkdir(parents=True)
        marker = staging_marker(tmp)
        marker.write_text(json.dumps({"pid": 1, "host": "container-before-restart"}))
        stamp = time.time() - age_h * 3600
        os.utime(marker, (stamp, stamp))
    assert clean_orphans(tmp_path, stale_s=24 * 3600) == ["old.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".new.partial.studio", "new.partial"]
