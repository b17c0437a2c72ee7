"""An uploaded ONNX model can be pruned: converted to a trainable torch module, pruned,
fine-tuned and shipped as ONNX whose accuracy an independent ONNX Runtime check reproduces."""

from __future__ import annotations

import pytest
import torch

from core.errors import UnsupportedModelError
from core.pruning import PruningConfig, prune
from tests.conftest import FAST_MEASURE as FAST
from tests.helpers import onnx_zoo


@pytest.fixture(scope="module")
def onnx_cnn(tmp_path_factory, digits):
    """A user's small CNN on digits, trained briefly, exported with torch's defaults."""
    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=6)
    path = tmp_path_factory.mktemp("user") / "cnn.onnx"
    return onnx_zoo.export_default(net, path, torch.from_numpy(digits.X_test[:1])), digits


def test_an_onnx_model_is_pruned_and_measured_truthfully(onnx_cnn, tmp_path):
    path, data = onnx_cnn
    run = prune(path, data, PruningConfig(method="l1-unstructured", sparsity=0.5,
                                          finetune_epochs=1),
                out_dir=tmp_path / "p", measure_options=FAST)
    base, res = run.report["baseline"], run.report["result"]
    assert res["nonzero_params"] < 0.6 * base["nonzero_params"]
    assert res["accuracy"] >= base["accuracy"] - 0.05
    shipped = onnx_zoo.ort_accuracy(tmp_path / "p", data.X_test, data.y_test)
    assert abs(shipped - res["accuracy"]) < 1e-3


def test_structured_pruning_of_an_onnx_model_works_or_refuses_clearly(onnx_cnn, tmp_path):
    """Channels really removed, or one clear refusal and nothing written (today Torch-Pruning
    does not follow the converted graph's reshapes: see the closing note of issue 13)."""
    path, data = onnx_cnn
    try:
        run = prune(path, data, PruningConfig(method="structured-l2", sparsity=0.5,
                                              finetune_epochs=1),
                    out_dir=tmp_path / "p", measure_options=FAST)
    except UnsupportedModelError as exc:
        assert "structured" in str(exc) and not (tmp_path / "p").exists()
        return
    assert run.report["result"]["params"] < 0.6 * run.report["baseline"]["params"]
    shipped = onnx_zoo.ort_accuracy(tmp_path / "p", data.X_test, data.y_test)
    assert abs(shipped - run.report["result"]["accuracy"]) < 1e-3
