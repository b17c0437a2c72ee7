"""--overwrite replaces an earlier run folder only where every entry in it is one the studio
wrote there: a user's file, subfolder, changed model file or link is never deleted (one clear
error, nothing touched), and a failure while replacing keeps the earlier run."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_MEASURE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished run folder (wine MLP, one epoch), copied by each test."""
    out = tmp_path_factory.mktemp("template") / "run"
    _train(out)
    return out


def _train(out: Path, seed: int = 0, **kwargs):
    from core.runs import train_baseline
    from core.training import TrainConfig

    return train_baseline("mlp", "wine", out_dir=out, config=TrainConfig(epochs=1, seed=seed),
                          measure_options=FAST_MEASURE, **kwargs)


def _state(folder: Path) -> dict[str, object]:
    """Every entry under ``folder`` as it is, links read (never followed)."""
    state: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_file():
            state[rel] = path.read_bytes()
        else:
            state[rel] = "folder"
    return state


def _seed(run: Path) -> int:
    return json.loads((run / "report.json").read_text())["seed"]


def _add_note(run: Path, outside: Path) -> str:
    (run / "notes.txt").write_text("my thesis")
    return "notes.txt"


def _add_subfolder(run: Path, outside: Path) -> str:
    (run / "mine").mkdir()
    (run / "mine" / "data.csv").write_text("a,b\n1,2\n")
    return "mine"


def _change_model(run: Path, outside: Path) -> str:
    (run / "model.onnx").write_bytes(b"my own model, same name")
    return "model.onnx"


def _change_model_same_size(run: Path, outside: Path) -> str:
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the digest tells
    (run / "model.safetensors").write_bytes(bytes(data))
    return "model.safetensors"


def _link_to_folder(run: Path, outside: Path) -> str:
    (run / "elsewhere").symlink_to(outside, target_is_directory=True)
    return "elsewhere"


def _link_to_file(run: Path, outside: Path) -> str:
    (run / "data.csv").symlink_to(outside / "precious.csv")
    return "data.csv"


@pytest.mark.parametrize("add", [_add_note, _add_subfolder, _change_model,
                                 _change_model_same_size, _link_to_folder, _link_to_file])
def test_overwrite_refuses_a_run_folder_holding_what_the_studio_did_not_write(
        template, tmp_path, add):
    from core.artifacts import OutputFolderError

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.csv").write_text("x\n1\n")
    run = tmp_path / "runs" / "base"
    shutil.copytree(template, run)
    name = add(run, outside)
    before, elsewhere = _state(run), _state(outside)
    with pytest.raises(OutputFolderError, match=f"did not write there.*'{name}'") as err:
        _train(run, seed=1, overwrite=True)
    assert str(tmp_path) not in str(err.value)  # names entries, never where they live
    assert _state(run) == before and _state(outside) == elsewhere
    assert sorted(p.name for p in run.parent.iterdir()) == ["base"]  # no .partial, no .old


def test_cli_overwrite_names_the_foreign_entries_and_changes_nothing(template, tmp_path,
                                                                     monkeypatch):
    import core.measure
    from core.cli import run as cli

    monkeypatch.setattr(core.measure, "measure_many",
                        functools.partial(core.measure.measure_many, **FAST_MEASURE))
    run = tmp_path / "base"
    shutil.copytree(template, run)
    for k in range(6):
        (run / f"note{k}.txt").write_text(str(k))
    before = _state(run)
    errors: list[str] = []
    args = ["train", "--model", "mlp", "--data", "wine", "--epochs", "1", "--out", str(run)]
    for extra in ([], ["--overwrite"]):  # refused the same way, with or without --overwrite
        assert cli([*args, *extra], err=errors.append) == 2
        assert "'note0.txt', 'note1.txt', 'note2.txt', 'note3.txt' and 2 more" in errors[-1]
        assert "choose another --out" in errors[-1] and str(tmp_path) not in errors[-1]
    assert _state(run) == before


def test_overwrite_replaces_a_clean_run_folder_its_copy_and_its_bundle(template, tmp_path):
    from core.artifacts import make_bundle

    run = tmp_path / "moved" / "base"  # a run folder copied elsewhere is still the studio's
    shutil.copytree(template, run)
    make_bundle(run)  # the studio's download, written into the run folder
    assert (run / "bundle.zip").is_file()
    _train(run, seed=1, overwrite=True)
    assert _seed(run) == 1 and not (run / "bundle.zip").exists()
    assert sorted(p.name for p in run.parent.iterdir()) == ["base"]
    _train(run, seed=2, overwrite=True)  # the new run folder is as replaceable
    assert _seed(run) == 2


def test_an_older_run_folder_without_a_file_list_is_judged_by_its_report(template, tmp_path):
    from core.artifacts import OutputFolderError
    from core.artifacts._report import RUN_FILES

    run = tmp_path / "old"
    shutil.copytree(template, run)
    (run / RUN_FILES).unlink()  # as written before run folders listed their files
    (run / "comparison.md").write_text("written by hand")  # a studio-like name, not listed
    before = _state(run)
    with pytest.raises(OutputFolderError, match="'comparison.md'.*older studio"):
        _train(run, seed=1, overwrite=True)
    assert _state(run) == before
    (run / "comparison.md").unlink()
    _train(run, seed=1, overwrite=True)  # only report.json and the files its report lists
    assert _seed(run) == 1


def test_a_symlinked_out_replaces_the_run_it_points_to_and_stays_a_link(template, tmp_path):
    real = tmp_path / "disk" / "base"
    shutil.copytree(template, real)
    link = tmp_path / "runs" / "base"
    link.parent.mkdir()
    link.symlink_to(real, target_is_directory=True)
    _train(link, seed=1, overwrite=True)
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert _seed(real) == 1
    assert sorted(p.name for p in real.parent.iterdir()) == ["base"]
    assert sorted(p.name for p in link.parent.iterdir()) == ["base"]


def test_an_out_folder_holding_the_input_is_refused(template, tmp_path):
    """The input is a run folder inside the out run folder (as auto's candidates are):
    replacing the out folder would delete the input while it is read."""
    from core.artifacts import OutputFolderError, staging
    from core.runs import benchmark_model

    outer = tmp_path / "outer"
    with staging(outer) as tmp:
        shutil.copytree(template, tmp / "inner")
        shutil.copyfile(template / "report.json", tmp / "report.json")
    before = _state(outer)
    with pytest.raises(OutputFolderError, match="holds the input 'inner'"):
        benchmark_model(outer / "inner", out_dir=outer, overwrite=True,
                        measure_options=FAST_MEASURE)
    assert _state(outer) == before


def test_a_failure_while_replacing_keeps_the_earlier_run(template, tmp_path, monkeypatch):
    run = tmp_path / "base"
    shutil.copytree(template, run)
    before = _state(run)
    rename = Path.rename

    def failing(self, target):
        if self.name.endswith(".partial"):  # the new run cannot take its name
            raise OSError("disk detached")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk detached"):
        _train(run, seed=1, overwrite=True)
    assert _state(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]  # no .partial, no .old


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def test_a_running_writers_staging_folder_is_never_deleted(tmp_path):
    from core.artifacts import OutputFolderError

    code = ("import sys, time; from core.artifacts import staging\n"
            "with staging(sys.argv[1]) as tmp:\n"
            "    (tmp / 'model.onnx').write_bytes(b'half')\n"
            "    time.sleep(120)\n")
    run = tmp_path / "run"
    partial = tmp_path / "run.partial"
    writer = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=ROOT)
    try:
        end = time.monotonic() + 60
        while _read(partial / "model.onnx") != b"half":  # created, then written: wait for both
            assert time.monotonic() < end and writer.poll() is None
            time.sleep(0.05)
        with pytest.raises(OutputFolderError, match="Another studio run is writing 'run'"):
            _train(run)
        assert (partial / "model.onnx").read_bytes() == b"half"
    finally:
        writer.kill()
        writer.wait(10)
    _train(run)  # its writer is gone: the studio's leftover is cleared, the run written
    assert _seed(run) == 0 and not partial.exists()


def test_a_file_the_user_adds_during_the_run_stops_the_replace(template, tmp_path):
    """The run folder is checked again when the new run is ready: a note saved into it while
    the run trained is kept, with the earlier run, and the new run is not written."""
    from core.artifacts import OutputFolderError
    from core.callbacks import Callbacks

    run = tmp_path / "base"
    shutil.copytree(template, run)

    def note(fraction: float, message: str) -> None:
        if not (run / "notes.txt").exists():
            (run / "notes.txt").write_text("written while it trained")

    before = {**_state(run), "notes.txt": b"written while it trained"}
    with pytest.raises(OutputFolderError, match="'notes.txt'"):
        _train(run, seed=1, overwrite=True, callbacks=Callbacks(on_progress=note))
    assert _state(run) == before and _seed(run) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
