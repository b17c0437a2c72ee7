"""An uploaded ONNX model can be pruned: converted to a trainable torch module, pruned,
fine-tuned and shipped as ONNX whose accuracy an independent ONNX Runtime check reproduces."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from core.data import load_dataset
from core.errors import UnsupportedModelError
from core.pruning import PruningConfig, prune

FAST = {"budget_s": 0.02, "memory": False}


@pytest.fixture(scope="module")
def onnx_cnn(tmp_path_factory):
    """A user's small CNN on digits, trained briefly, exported with torch's defaults."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 2 * 2, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    path = tmp_path_factory.mktemp("user") / "cnn.onnx"
    torch.onnx.export(net.eval(), (torch.from_numpy(data.X_test[:1]),), str(path))
    return path, data


def _ort_accuracy(run_dir, data) -> float:
    sess = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = sess.run(None, {name: data.X_test})[0]
    return float((logits.argmax(1) == data.y_test).mean())


def test_an_onnx_model_is_pruned_and_measured_truthfully(onnx_cnn, tmp_path):
    path, data = onnx_cnn
    run = prune(path, data, PruningConfig(method="l1-unstructured", sparsity=0.5,
                                          finetune_epochs=1),
                out_dir=tmp_path / "p", measure_options=FAST)
    base, res = run.report["baseline"], run.report["result"]
    assert res["nonzero_params"] < 0.6 * base["nonzero_params"]
    assert res["accuracy"] >= base["accuracy"] - 0.05
    assert abs(_ort_accuracy(tmp_path / "p", data) - res["accuracy"]) < 1e-3


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
    assert abs(_ort_accuracy(tmp_path / "p", data) - run.report["result"]["accuracy"]) < 1e-3
