"""Unit tests of the foundation: models, data, training, measurement, artifacts, CLI."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import core
from core.errors import DataError, InvalidParameterError, ModelFileError, StudioError
from tests.conftest import FAST_MEASURE


def test_every_public_name_is_importable():
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{info.name}.{name}"
    for name in core.__all__:
        assert getattr(core, name) is not None


def test_import_core_has_no_side_effects():
    code = ("import sys, threading; import core; "
            "assert 'torch' not in sys.modules and 'gradio' not in sys.modules; "
            "assert threading.active_count() == 1")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("family", ["mlp", "cnn", "vit"])
def test_families_build_run_and_rebuild_from_spec(family, digits):
    from core.models import build_model, model_for_data

    model = model_for_data(family, digits.input_shape, digits.num_classes).eval()
    x = model.example_inputs(3)
    assert model(x).shape == (3, 10)
    spec = model.spec()
    twin = build_model(spec.family, **spec.kwargs)
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(twin.eval()(x), model(x))


def test_health_monitor_net_is_an_mlp():
    from core.models import build_model

    net = build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)
    assert net(torch.zeros(2, 9)).shape == (2, 4)


@pytest.mark.parametrize("kwargs, name", [
    ({"family": "cnn", "channels": [16, 0]}, "channels"),
    ({"family": "vit", "patch_size": 3}, "patch_size"),
    ({"family": "mlp", "input_dim": 9, "num_classes": 1}, "num_classes"),
    ({"family": "resnet"}, "model"),
])
def test_bad_model_kwargs_name_the_parameter(kwargs, name):
    from core.models import build_model

    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        build_model(kwargs.pop("family"), **kwargs)


@pytest.mark.parametrize("name, shape, classes", [
    ("digits", (1, 8, 8), 10), ("wine", (13,), 3), ("breast_cancer", (30,), 2),
    ("health", (9,), 4)])
def test_builtin_datasets_split_deterministically(name, shape, classes):
    from core.data import load_dataset

    a, b = load_dataset(name, seed=3), load_dataset(name, seed=3)
    assert a.input_shape == shape and a.num_classes == classes
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert len(a.y_train) > len(a.y_test) > 0 and len(a.y_val) > 0
    assert a.X_train.dtype == np.float32 and a.preprocessing["type"] in ("scale", "standardize")


def test_user_csv_and_npz(tmp_path):
    from core.data import load_dataset

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.array(["cat", "dog"] * 30)
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,c,target\n" + "\n".join(
        f"{r[0]},{r[1]},{r[2]},{lab}" for r, lab in zip(X, y)))
    d = load_dataset(csv, label_column="target")
    assert d.class_names == ["cat", "dog"] and d.input_shape == (3,)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(40, 8, 8)), y=np.arange(40) % 2)
    assert load_dataset(tmp_path / "d.npz").input_shape == (1, 8, 8)


@pytest.mark.parametrize("content, match", [
    ("a,b\n1,2\n", "no 'label' column"),
    ("a,label\nx,1\n" + "y,0\n" * 12, "holds text"),
    ("a,label\n1,1\n,0\n" + "2,0\n" * 12, "missing values"),
])
def test_bad_csv_gets_a_clear_message(tmp_path, content, match):
    from core.data import load_dataset

    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    from core.data import load_dataset

    np.savez(tmp_path / "p.npz", X=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20))
    with pytest.raises(DataError):
        load_dataset(tmp_path / "p.npz")


def test_training_is_seeded_and_reports_progress(digits):
    from core.callbacks import Callbacks
    from core.models import model_for_data
    from core.training import TrainConfig, seed_everything, train

    seen = []
    results = []
    for _ in range(2):
        seed_everything(7)
        model = model_for_data("mlp", digits.input_shape, digits.num_classes)
        cb = Callbacks(on_progress=lambda f, m: seen.append(f))
        results.append(train(model, digits, TrainConfig(epochs=2, seed=7), callbacks=cb))
    assert results[0].history == results[1].history
    assert results[0].metrics.accuracy > 0.8 and seen[-1] == 1.0


def test_training_can_be_cancelled(digits):
    from core.callbacks import Callbacks
    from core.errors import CancelledError
    from core.models import model_for_data
    from core.training import TrainConfig, train

    cb = Callbacks()
    cb.on_progress = lambda f, m: cb.cancel.cancel()
    model = model_for_data("mlp", digits.input_shape, digits.num_classes)
    with pytest.raises(CancelledError):
        train(model, digits, TrainConfig(epochs=5), callbacks=cb)


@pytest.mark.parametrize("value", [0, -3, 1.5, "x"])
def test_bad_epochs(value):
    from core.training import TrainConfig

    with pytest.raises(InvalidParameterError, match="'epochs'"):
        TrainConfig(epochs=value)


def test_model_that_does_not_fit_the_data(digits):
    from core.models import build_model
    from core.training import TrainConfig, train

    with pytest.raises(InvalidParameterError, match="input shape"):
        train(build_model("mlp", input_dim=9, num_classes=10), digits, TrainConfig(epochs=1))


def test_report_matches_an_independent_remeasurement(baseline_dir, digits):
    from core.artifacts import read_report
    from core.measure import evaluate, onnx_param_counts

    report = read_report(baseline_dir)
    assert report["schema"] == "optimization-studio/report/v1"
    res = report["result"]
    assert res["size_bytes"] == (baseline_dir / "model.safetensors").stat().st_size
    assert res["params"] == sum(p.numel() for p in _load(baseline_dir).parameters())
    onnx_acc = evaluate(str(baseline_dir / "model.onnx"), digits).accuracy
    assert abs(onnx_acc - res["accuracy"]) < 1e-9
    assert onnx_param_counts(baseline_dir / "model.onnx")[0] > 0.9 * res["params"]
    assert report["onnx_parity_max_abs_diff"] < 1e-3
    assert set(res["latency_ms"]) == {"1", "64"}
    for entry in res["latency_ms"].values():
        assert 0 < entry["p50"] <= entry["p95"]
    assert report["environment"]["threads"] == 1 and report["environment"]["torch"]
    for art in report["artifacts"]:
        assert (baseline_dir / art["path"]).stat().st_size == art["bytes"]


def _load(run_dir):
    from core.artifacts import load_model

    return load_model(run_dir).model


def test_measure_many_interleaves_and_counts(baseline_dir, digits):
    from core.measure import measure_many

    model = _load(baseline_dir)
    out = measure_many({"torch": model, "onnx": str(baseline_dir / "model.onnx")}, digits,
                       files={"onnx": [baseline_dir / "model.onnx"]}, budget_s=0.05,
                       memory=True)
    assert out["torch"].accuracy == pytest.approx(out["onnx"].accuracy, abs=1e-9)
    assert out["torch"].macs == out["onnx"].macs > 0
    assert out["onnx"].size_bytes == (baseline_dir / "model.onnx").stat().st_size
    assert out["onnx"].peak_memory_mb is not None and out["onnx"].peak_memory_mb > 0


def test_load_refuses_pickles_and_accepts_torchscript_and_export(tmp_path, baseline_dir):
    from core.artifacts import detect_format, load_model

    model = _load(baseline_dir)
    x = model.example_inputs(2)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    with pytest.raises(ModelFileError, match="never unpickles"):
        load_model(tmp_path / "ckpt.pt")
    (tmp_path / "raw.pkl").write_bytes(b"\x80\x04\x95\x00")
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(tmp_path / "raw.pkl")
    torch.jit.save(torch.jit.trace(model, x), tmp_path / "ts.pt")
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    assert detect_format(tmp_path / "ts.pt") == "torchscript"
    assert detect_format(tmp_path / "m.pt2") == "export"
    for name in ("ts.pt", "m.pt2"):  # they run code when loaded: only with the opt-in
        with pytest.raises(ModelFileError, match="--trust-model"):
            load_model(tmp_path / name)
        loaded = load_model(tmp_path / name, trust_model=True)
        torch.testing.assert_close(loaded.model(x), model(x))
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "bad.onnx")


def test_failed_run_leaves_nothing(tmp_path, digits):
    from core.runs import train_baseline
    from core.training import TrainConfig

    out = tmp_path / "run"
    with pytest.raises(StudioError):
        train_baseline("cnn", load_tabular(), out_dir=out, config=TrainConfig(epochs=1))
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def load_tabular():
    from core.data import load_dataset

    return load_dataset("wine")


def test_bundle_contents(baseline_dir, tmp_path):
    from core.artifacts import make_bundle

    path = make_bundle(baseline_dir, tmp_path / "b.zip")
    with zipfile.ZipFile(path) as zf:
        assert {"model.onnx", "model.json", "model.safetensors", "report.json",
                "MODEL_CARD.md", "recipe.yaml"} <= set(zf.namelist())
        assert "accuracy" in zf.read("MODEL_CARD.md").decode()


def _studio(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_train_benchmark_and_exit_codes(tmp_path, baseline_dir, capsys):
    from core.cli import run

    out = tmp_path / "t"
    done = _studio("train", "--model", "mlp", "--data", "health", "--epochs", "2", "--out",
                   str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["operation"] == "train" and report["result"]["accuracy"] > 0.4
    done = _studio("benchmark", "--model", str(baseline_dir / "model.onnx"), "--data", "digits",
                   "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    bad = _studio("train", "--epochs", "-3", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "'epochs'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()[-1]) < 300
    capsys.readouterr()  # the listings in-process (the same run() as the console script)
    assert run(["datasets"]) == 0 and "digits" in capsys.readouterr().out
    assert run(["methods", "bogus"]) == 2
    assert run(["methods", "quantize"]) == 0 and "ort-static-int8" in capsys.readouterr().out
    # after a progress bar, the error still gets a line of its own
    bad = _studio("quantize", "--model", str(baseline_dir), "--method", "ort-static-int8",
                  "--calibration-size", "0", "--out", str(tmp_path / "q"))
    shown = bad.stderr.strip().splitlines()[-1].split("\r")[-1]  # what a terminal shows
    assert bad.returncode == 2 and shown.startswith("error: ")


def test_benchmark_a_torch_export_file(tmp_path, baseline_dir, digits):
    from core.artifacts import trusted_model_code
    from core.runs import benchmark_model

    model = _load(baseline_dir)
    x = model.example_inputs(2)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "static.pt2")
    with pytest.raises(StudioError, match="dynamic batch"), trusted_model_code():
        benchmark_model(tmp_path / "static.pt2", digits, out_dir=tmp_path / "s",
                        measure_options=FAST_MEASURE)
    dynamic = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(dynamic, tmp_path / "m.pt2")
    with trusted_model_code():
        report = benchmark_model(tmp_path / "m.pt2", digits, out_dir=tmp_path / "run",
                                 measure_options=FAST_MEASURE).report
    assert report["result"]["accuracy"] > 0.5
    assert report["result"]["size_bytes"] == (tmp_path / "run" / "model.pt2").stat().st_size


def test_peak_memory_grows_with_the_model(tmp_path, monkeypatch):
    """The imports' own peak must not hide the model's: 16 MB more weights show up.
    Paths relative to the caller's folder work too (the probe runs elsewhere)."""
    from core.artifacts import export_onnx
    from core.measure._memory import measure_memory_subprocess
    from core.models import build_model

    paths = []
    for name, hidden in (("small", [16]), ("large", [2048, 2048])):
        model = build_model("mlp", input_dim=64, hidden_dims=hidden, num_classes=10)
        export_onnx(model, tmp_path / f"{name}.onnx", model.example_inputs())
        paths.append(Path(f"{name}.onnx"))
    monkeypatch.chdir(tmp_path)
    small, large = measure_memory_subprocess(paths).values()
    assert small > 0 and large - small > 12


def test_bundle_leaves_out_search_work_and_keeps_a_runs_own_recipe(baseline_dir, tmp_path):
    import shutil

    from core.artifacts import make_bundle

    run = tmp_path / "auto-like"
    shutil.copytree(baseline_dir, run)
    (run / "candidates" / "c1").mkdir(parents=True)
    (run / "candidates" / "c1" / "model.onnx").write_bytes(b"x" * 1000)
    (run / "recipe.yaml").write_text("name: mine\n")
    with zipfile.ZipFile(make_bundle(run)) as zf:
        names = zf.namelist()
        assert not [n for n in names if n.startswith("candidates/")]
        assert names.count("recipe.yaml") == 1 and zf.read("recipe.yaml") == b"name: mine\n"


def test_a_bundles_recipe_names_its_teacher_runs_never_their_server_paths(tmp_path):
    """recipe.yaml is rebuilt from the lineage's own configs (f5d5184): a multi-teacher
    distill step kept its extra teacher as the server path of that run folder."""
    import yaml

    from core.artifacts import make_bundle
    from core.distillation import distill
    from core.runs import train_baseline

    for name, seed in (("a", 0), ("b", 1)):
        train_baseline("mlp", "wine", out_dir=tmp_path / name, epochs=2, seed=seed,
                       measure_options=FAST_MEASURE)
    distill(tmp_path / "a", None, {"method": "multi-teacher", "teachers": [str(tmp_path / "b")],
                                   "epochs": 1}, out_dir=tmp_path / "k",
            measure_options=FAST_MEASURE)
    with zipfile.ZipFile(make_bundle(tmp_path / "k", tmp_path / "k.zip")) as zf:
        text = zf.read("recipe.yaml").decode()
    assert str(tmp_path) not in text
    assert yaml.safe_load(text)["steps"][-1]["distill"]["teachers"] == ["b"]


def test_design_facades_are_callable(digits):
    """DESIGN.md: ``from core import quantize, prune, distill, tune, measure`` (all callable)."""
    from core import distill, measure, prune, quantize, tune
    from core.models import build_model

    assert all(callable(f) for f in (quantize, prune, distill, tune, measure))
    m = measure(build_model("cnn", num_classes=10), digits, budget_s=0.01, memory=False)
    assert 0 <= m.accuracy <= 1 and m.params > 0
