"""Operator fusion: fewer nodes, the same outputs, measured side by side, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import FAST_MEASURE


def _randomize_bn(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
    return model.eval()


def test_fuse_run_folder_same_outputs_fewer_nodes_measured(baseline_dir, tmp_path):
    from core.fusion import fuse
    from core.measure import ort_session
    from core.runs import open_variant

    result = fuse(baseline_dir, out_dir=tmp_path / "fused", measure_options=FAST_MEASURE)
    rep = result.report
    info = rep["fusion"]
    assert info["nodes_after"] < info["nodes_before"]
    assert {f["pattern"] for f in info["fused"]} == {"conv-bn", "conv-relu"}
    assert info["max_rel_output_diff"] <= 1e-4
    assert rep["ratios"]["speedup_b1"] > 0 and rep["ratios"]["speedup_b64"] > 0
    assert rep["result"]["accuracy"] == pytest.approx(rep["baseline"]["accuracy"], abs=1e-9)
    # the shipped ONNX gives the original model's outputs
    X = open_variant(baseline_dir).data.X_test[:32]
    orig = open_variant(baseline_dir).model
    got = ort_session(result.run_dir / "model.onnx").run(None, {"input": X})[0]
    with torch.inference_mode():
        ref = orig(torch.from_numpy(X)).numpy()
    assert np.abs(got - ref).max() < 1e-3
    assert json.loads((result.run_dir / "model.json").read_text())["fuse"]["method"] == "fx-fuse"


def test_seed_operator_fuser_patterns():
    from core import OperatorFuser

    model = _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU6(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 4)))
    fuser = OperatorFuser()
    fused_model = fuser.fuse_operations(
        model=model,
        patterns=[
            ["Conv2D", "BatchNorm", "ReLU"],
            ["Linear", "ReLU"],
            ["Conv2D", "ReLU6"]
        ]
    )
    x = torch.randn(5, 3, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(fused_model(x), model(x), atol=1e-5)
    kinds = [type(m).__name__ for m in fused_model.modules()]
    assert "BatchNorm2d" not in kinds and "ReLU" not in kinds and "ReLU6" not in kinds
    assert sorted(f["pattern"] for f in fuser.last_info["fused"]) == [
        "conv-bn", "conv-relu", "conv-relu6", "linear-relu"]


def test_functional_relu_and_shared_outputs():
    from core.fusion import fuse_model

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = self.a(x)
            return torch.relu(self.b(x)) + h.relu() + h  # 'a' has two users: not fused

    net = Net().eval()
    fused, info = fuse_model(net, ["linear-relu"])
    assert [f["layer"] for f in info.fused] == ["b"]
    x = torch.randn(3, 4)
    assert torch.allclose(fused(x), net(x), atol=1e-6)


def test_refusals(tmp_path):
    from core.errors import InvalidParameterError, UnsupportedModelError
    from core.fusion import FusionConfig, fuse

    with pytest.raises(InvalidParameterError, match="'patterns'"):
        FusionConfig(patterns=(["Conv2D", "Softmax"],))
    with pytest.raises(UnsupportedModelError, match="Nothing to fuse"):
        fuse(nn.Sequential(nn.Linear(64, 10)).eval(), "digits", out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_fuse_and_factorize(baseline_dir, tmp_path, capsys):
    from core.cli import run

    assert run(["fuse", "--model", str(baseline_dir), "--out", str(tmp_path / "f")]) == 0
    assert "graph nodes" in capsys.readouterr().out
    assert run(["factorize", "--model", str(baseline_dir), "--rank-ratio", "0.5",
                "--finetune-epochs", "0", "--layers", "classifier",
                "--out", str(tmp_path / "l")]) == 0
    assert "parameters" in capsys.readouterr().out
    assert run(["fuse", "--model", str(baseline_dir), "--patterns", "conv-softmax",
                "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
