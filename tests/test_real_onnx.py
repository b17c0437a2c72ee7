"""ONNX models as users bring them, through benchmark and quantize: the report's figures equal
an onnxruntime-only check of the shipped artifact, sizes count external data, and a method
that cannot apply or does nothing fails with one clear message."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST_MEASURE
from tests.helpers import onnx_zoo as zoo

MODELS = ("default_export", "fixed_batch", "sklearn_labels", "normalize_inside", "batch_bound")


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits) -> dict[str, Path]:
    """Each kind of ONNX file once: torch's default export (external data, batch fixed at 1),
    a legacy fixed-batch export, a sklearn-onnx-style graph (int64 label output first), a net
    that standardizes its input itself (external data), and a batch-dependent fixed batch."""
    import torch

    root = tmp_path_factory.mktemp("onnx_zoo")
    X, y = digits.X_train, digits.y_train
    x1 = torch.from_numpy(X[:1])
    net = zoo.train_tiny(zoo.tiny_net(), X, y, epochs=6)
    inside = zoo.train_tiny(zoo.tiny_net(normalize=(float(X.mean()), float(X.std()))), X, y,
                            epochs=6)
    out = {
        "default_export": zoo.export_default(net, root / "default.onnx", x1),
        "fixed_batch": zoo.export_fixed_batch(net, root / "fixed.onnx", x1),
        "sklearn_labels": zoo.sklearn_style_onnx(X, y, root / "sk.onnx", num_classes=10),
        "normalize_inside": zoo.with_external_data(
            zoo.export_fixed_batch(inside, root / "inside.onnx", x1)),
        "batch_bound": zoo.batch_dependent_onnx(X, y, root / "bound.onnx", num_classes=10),
    }
    return out


def _shipped_onnx_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in run_dir.iterdir() if p.name.startswith("model.onnx"))


def _check_against_ort(report: dict, run_dir: Path, digits) -> None:
    X, y = digits.split("test")
    assert report["result"]["accuracy"] == pytest.approx(zoo.ort_accuracy(run_dir, X, y),
                                                         abs=1e-3)
    assert report["result"]["size_bytes"] == _shipped_onnx_bytes(run_dir)


@pytest.mark.parametrize("name", MODELS)
def test_benchmark_reports_what_onnxruntime_measures(models, digits, tmp_path, name):
    from core.runs import benchmark_model

    run = tmp_path / "bench"
    report = benchmark_model(models[name], digits, out_dir=run,
                             measure_options=FAST_MEASURE).report
    _check_against_ort(report, run, digits)
    assert report["result"]["accuracy"] > 0.8
    if name in ("default_export", "normalize_inside"):
        assert (run / "model.onnx.data").is_file()  # the weights travel with the graph
        listed = {a["path"]: a["format"] for a in report["artifacts"]}
        assert listed["model.onnx.data"] == "onnx-external-data"
    batch_notes = [w for w in report["warnings"] if "batch dimension" in w]
    if name == "batch_bound":  # rows depend on each other: kept at its fixed batch
        assert list(report["result"]["latency_ms"]) == ["4"]
        assert "could not be made dynamic" in batch_notes[0]
    elif name in ("default_export", "fixed_batch", "normalize_inside"):
        assert "made it dynamic" in batch_notes[0] and report["onnx"]["batch_made_dynamic"]
        assert set(report["result"]["latency_ms"]) == {"1", "64"}
    else:
        assert not batch_notes


@pytest.mark.parametrize("name", MODELS)
def test_static_int8_is_measured_and_really_quantized(models, digits, tmp_path, name):
    import onnx

    from core.quantization import quantize
    from core.runs import benchmark_model

    bench = benchmark_model(models[name], digits, out_dir=tmp_path / "bench",
                            measure_options=FAST_MEASURE).report
    run = tmp_path / "q"
    report = quantize(models[name], digits, "ort-static-int8", out_dir=run,
                      measure_options=FAST_MEASURE).report
    _check_against_ort(report, run, digits)
    # One size for baseline and result: the FP32 deployable artifact with its external data.
    assert report["baseline"]["size_bytes"] == bench["result"]["size_bytes"]
    assert report["ratios"]["size_reduction"] == pytest.approx(
        report["baseline"]["size_bytes"] / report["result"]["size_bytes"])
    if name in ("default_export", "fixed_batch", "normalize_inside"):
        assert report["ratios"]["size_reduction"] > 1.5
    ops = {n.op_type for n in onnx.load(str(run / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report["result"]["accuracy"] > report["baseline"]["accuracy"] - 0.05


def test_bundle_of_an_external_data_model_runs_elsewhere(models, digits, tmp_path):
    from core.artifacts import make_bundle
    from core.runs import benchmark_model

    run = tmp_path / "bench"
    report = benchmark_model(models["default_export"], digits, out_dir=run,
                             measure_options=FAST_MEASURE).report
    elsewhere = tmp_path / "elsewhere"
    with zipfile.ZipFile(make_bundle(run, tmp_path / "bundle.zip")) as zf:
        assert {"model.onnx", "model.onnx.data"} <= set(zf.namelist())
        zf.extractall(elsewhere)
    X, y = digits.split("test")
    assert zoo.ort_accuracy(elsewhere, X, y) == pytest.approx(report["result"]["accuracy"],
                                                              abs=1e-3)


def test_auto_ships_the_winner_with_its_external_data(models, digits, tmp_path):
    from core.auto import AutoConfig, auto

    out = tmp_path / "auto"
    report = auto(models["default_export"], digits, AutoConfig(candidates=("ort-fp32",)),
                  out_dir=out, measure_options=FAST_MEASURE).report
    # The output folder is the winner: it loads with onnxruntime alone and scores as reported.
    X, y = digits.split("test")
    assert zoo.ort_accuracy(out, X, y) == pytest.approx(report["result"]["accuracy"], abs=1e-3)


def test_external_data_missing_or_outside_its_folder_is_one_clear_error(models, tmp_path):
    import shutil

    from core.artifacts import load_model
    from core.errors import ModelFileError

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(models["default_export"], alone / "model.onnx")  # the .data left behind
    with pytest.raises(ModelFileError, match="'default.onnx.data', which is missing"):
        load_model(alone / "model.onnx")
    nested = tmp_path / "nested" / "inner"
    nested.mkdir(parents=True)
    shutil.copyfile(models["default_export"], nested / "model.onnx")
    shutil.copyfile(Path(f"{models['default_export']}.data"), nested.parent / "default.onnx.data")
    _point_weights_at(nested / "model.onnx", "../default.onnx.data")
    with pytest.raises(ModelFileError, match="outside its own folder"):
        load_model(nested / "model.onnx")


def _point_weights_at(path: Path, location: str) -> None:
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
    onnx.save(model, str(path))


def test_label_output_is_never_scored_and_a_named_output_is_checked(models, digits, tmp_path):
    from core.artifacts import load_model, make_bundle
    from core.errors import InvalidParameterError, UnsupportedModelError
    from core.measure import evaluate
    from core.runs import benchmark_model, open_variant

    loaded = load_model(models["sklearn_labels"])
    assert loaded.meta["output_name"] == "probabilities" and loaded.num_classes == 10
    metrics = evaluate(loaded.model, digits)
    assert np.isfinite(metrics.loss) and metrics.loss < 1.0  # probabilities, not logits
    with pytest.raises(UnsupportedModelError, match="'label' is tensor\\(int64\\)"):
        load_model(models["sklearn_labels"], output_name="label")
    with pytest.raises(InvalidParameterError, match="output_name"):
        load_model(models["sklearn_labels"], output_name="nope")
    run = tmp_path / "named"
    report = benchmark_model(models["sklearn_labels"], digits, out_dir=run,
                             output_name="probabilities", measure_options=FAST_MEASURE).report
    assert report["result"]["accuracy"] == pytest.approx(metrics.accuracy)
    assert open_variant(run).loaded.meta["output_name"] == "probabilities"  # kept with the run
    card = zipfile.ZipFile(make_bundle(run)).read("MODEL_CARD.md").decode()
    assert "sess.run(['probabilities'], feed)" in card  # the card scores that output too


def test_a_method_that_would_do_nothing_fails_and_leaves_nothing(digits, tmp_path):
    from core.errors import StudioError
    from core.quantization import quantize

    model = zoo.conv_only_onnx(tmp_path / "conv.onnx", channels=1, num_classes=10)
    for method in ("ort-dynamic-int8", "ort-int4"):
        out = tmp_path / method
        with pytest.raises(StudioError, match=f"'{method}' did nothing on this model"):
            quantize(model, digits, method, out_dir=out, measure_options=FAST_MEASURE)
        assert not out.exists()


def test_methods_that_cannot_apply_refuse_up_front(models, digits, tmp_path):
    import torch

    from core.errors import UnsupportedModelError
    from core.quantization import applicable_methods, quantize

    # ONNX reaches torch-* methods through the converter; TorchScript has no eager module
    assert "torch-dynamic-int8" in applicable_methods("onnx")
    assert "torch-dynamic-int8" not in applicable_methods("torchscript")
    # A torch.export program's module has no nn.Linear left: refused, not shipped unchanged.
    program = torch.export.export(zoo.tiny_net().eval(), (torch.from_numpy(digits.X_train[:2]),))
    with pytest.raises(UnsupportedModelError, match="cannot quantize a torch.export"):
        quantize(program.module(), digits, "torch-dynamic-int8", out_dir=tmp_path / "g")


def test_a_torch_method_with_nothing_to_quantize_fails(digits, tmp_path):
    import torch

    from core.errors import UnsupportedModelError
    from core.quantization import quantize

    convs_only = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 3, padding=1),
                                     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    out = tmp_path / "q"
    with pytest.raises(UnsupportedModelError, match="'torch-dynamic-int8' did nothing on this "
                       "model: it quantizes nn.Linear modules and found none"):
        quantize(convs_only, digits, "torch-dynamic-int8", out_dir=out,
                 measure_options=FAST_MEASURE)
    assert not out.exists()


def test_torchscript_is_quantized_through_onnx_and_torch_methods_refuse(digits, tmp_path):
    import onnx
    import torch

    from core.artifacts._trust import trusted_model_code
    from core.errors import UnsupportedModelError
    from core.quantization import quantize

    net = zoo.train_tiny(zoo.tiny_net(), digits.X_train, digits.y_train, epochs=3)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(net, torch.from_numpy(digits.X_train[:1])), str(path))
    with trusted_model_code():
        with pytest.raises(UnsupportedModelError, match="cannot quantize a TorchScript model"
                           ".*use one of: ort-static-int8"):
            quantize(path, digits, "torch-dynamic-int8", out_dir=tmp_path / "t")
        run = tmp_path / "q"
        report = quantize(path, digits, "ort-static-int8", out_dir=run,
                          measure_options=FAST_MEASURE).report
    _check_against_ort(report, run, digits)
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(run / "model.onnx")).graph.node}


@pytest.mark.parametrize("method", ["ort-static-int8", "torch-dynamic-int8"])
def test_a_pt2_program_is_refused_before_any_work(digits, tmp_path, method):
    import torch

    from core.artifacts._trust import trusted_model_code
    from core.errors import UnsupportedModelError
    from core.quantization import quantize

    net = zoo.tiny_net().eval()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(net, (torch.from_numpy(digits.X_train[:2]),)), path)
    out = tmp_path / "q"
    with trusted_model_code(), pytest.raises(UnsupportedModelError,
                                             match="torch.onnx.export.*ort-static-int8"):
        quantize(path, digits, method, out_dir=out)
    assert not out.exists()


@pytest.mark.slow
def test_cli_benchmarks_torch_default_export(models, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "benchmark", "--model",
         str(models["default_export"]), "--data", "digits", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "model.onnx.data").is_file()


def test_python_api_verbs_are_the_documented_functions(tmp_path):
    from core import auto, compare
    from core.errors import StudioError

    assert "out_dir" in __import__("inspect").signature(auto).parameters
    with pytest.raises(StudioError):
        compare([], out_dir=tmp_path / "cmp")


@pytest.mark.slow
def test_distill_into_a_users_own_module(baseline_dir, digits, tmp_path):
    import torch

    from core import distill
    from core.distillation import DistillConfig

    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 10))
    out = tmp_path / "student"
    report = distill(baseline_dir, digits, DistillConfig(epochs=2), student=student,
                     out_dir=out, measure_options=FAST_MEASURE).report
    X, y = digits.split("test")
    assert report["result"]["accuracy"] == pytest.approx(zoo.ort_accuracy(out, X, y), abs=1e-3)
    assert (out / "label_only" / "model.onnx").is_file()
    assert report["distillation"]["label_only"]["size_bytes"] == \
        (out / "label_only" / "model.onnx").stat().st_size
