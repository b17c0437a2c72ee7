"""Issue 13's contract for an uploaded ONNX model beyond pruning: QAT refuses with one clear
message before any work; distillation trains a student of the user's own architecture
(converted with onnx2torch) or refuses clearly; fine-tune defaults follow the architecture."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from core.errors import StudioError
from tests.conftest import FAST_MEASURE as FAST
from tests.helpers import onnx_zoo, zoo


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory, digits):
    """A user's small digits CNN, trained briefly, exported with torch 2.13's defaults
    (dynamo exporter: model.onnx + model.onnx.data)."""
    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=6)
    path = tmp_path_factory.mktemp("user") / "net.onnx"
    return onnx_zoo.export_default(net, path, torch.from_numpy(digits.X_test[:1])), digits


def test_qat_on_an_onnx_upload_trains_the_converted_model(user_onnx, tmp_path):
    from core.measure import evaluate
    from core.quantization import load_artifact, quantize

    path, data = user_onnx
    run = quantize(path, data, {"method": "torch-qat-int8", "epochs": 1},
                   out_dir=tmp_path / "q", measure_options=FAST)
    report = run.report
    assert report["quantization"]["evidence"]  # quantized operators in the shipped graph
    assert any("converted to a torch module" in w for w in report["warnings"])
    shipped = load_artifact(tmp_path / "q" / "model.pt2")
    assert report["result"]["accuracy"] == pytest.approx(
        evaluate(shipped, data, "test").accuracy, abs=1e-9)
    assert report["result"]["accuracy"] > 0.8


def test_distillation_from_an_onnx_teacher_trains_its_own_architecture(user_onnx, tmp_path):
    from core.distillation import DistillConfig, distill

    path, data = user_onnx
    run = distill(path, data, DistillConfig(width=1.0, epochs=2), out_dir=tmp_path / "d",
                  measure_options=FAST)
    rep = run.report
    student = rep["distillation"]["student"]
    assert "converted" in student["origin"]
    graph = onnx.load(str(path)).graph
    teacher_params = sum(int(np.prod(i.dims)) for i in graph.initializer
                         if i.data_type == onnx.TensorProto.FLOAT)
    assert student["params"] == teacher_params  # the teacher's architecture, same width
    # the shipped ONNX scores what the report says (ONNX Runtime alone)
    assert abs(onnx_zoo.ort_accuracy(tmp_path / "d", data.X_test, data.y_test)
               - rep["result"]["accuracy"]) <= 0.001
    assert rep["result"]["accuracy"] > 0.3  # it learned (2 epochs from a fresh start)


def test_a_narrower_student_of_an_onnx_teacher_works_or_refuses_clearly(user_onnx, tmp_path):
    from core.distillation import DistillConfig, distill

    path, data = user_onnx
    try:
        run = distill(path, data, DistillConfig(width=0.5, epochs=1), out_dir=tmp_path / "d",
                      measure_options=FAST)
    except StudioError as exc:
        assert "width 0.5" in str(exc) and "--family" in str(exc)
        assert "/" not in str(exc).split("(")[0]  # no server paths
        assert not (tmp_path / "d").exists()
        return
    assert run.report["distillation"]["student"]["params"] < run.report["baseline"]["params"]


def test_an_onnx_student_file_is_converted_and_trained(user_onnx, tmp_path):
    from core.distillation import DistillConfig, distill

    path, data = user_onnx
    run = distill(path, data, DistillConfig(epochs=1), student=str(path),
                  out_dir=tmp_path / "s", measure_options=FAST)
    assert "ONNX, converted" in run.report["distillation"]["student"]["origin"]
    assert (tmp_path / "s" / "model.onnx").is_file()


@pytest.mark.parametrize("build, lr, epochs", [
    (lambda: zoo.vit_like(image_size=16, patch_size=4), 0.002, 10),
    (lambda: zoo.resnet_like(), 0.005, 5),
    (lambda: zoo.mobilenet_v3_like(width=16), 0.005, 5),
])
def test_finetune_defaults_follow_the_architecture(build, lr, epochs):
    from core.pruning import PruningConfig

    cfg, record = PruningConfig().for_model(build())
    assert (cfg.lr, cfg.finetune_epochs) == (lr, epochs)
    assert record["chosen_for_model"]["lr"] == lr and record["reason"]
    given, _ = PruningConfig(lr=0.01, finetune_epochs=1).for_model(build())
    assert (given.lr, given.finetune_epochs) == (0.01, 1)  # what the user gives is kept
