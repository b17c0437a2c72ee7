"""Layer-wise profiler: per-layer figures for torch and ONNX, the sum check, bottlenecks."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def cnn(digits):
    from core.models import model_for_data

    torch.manual_seed(0)
    return model_for_data("cnn", digits.input_shape, digits.num_classes).eval()


def test_torch_profile_layers_flops_and_sum(cnn, digits):
    from core import profile

    prof = profile(cnn, digits, batch_size=64, runs=20, warmup=3, budget_s=0.02)
    names = {lay.name for lay in prof.layers}
    convs = [n for n, m in cnn.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert set(convs) <= names
    conv = prof.layers[[lay.name for lay in prof.layers].index(convs[0])]
    w = cnn.get_submodule(convs[0]).weight
    # FLOPs of a 3x3 conv at 8x8, batch 64: 2 * out elements * in_ch * k * k
    assert conv.flops == 2 * 64 * w.shape[0] * 8 * 8 * w.shape[1] * 9
    assert conv.params == w.numel()
    assert conv.output_mb == pytest.approx(64 * w.shape[0] * 8 * 8 * 4 / 2**20)
    assert sum(lay.time_ms for lay in prof.layers) == pytest.approx(prof.layer_sum_ms)
    assert sum(lay.share for lay in prof.layers) == pytest.approx(
        prof.layer_sum_ms / prof.total_ms)
    assert prof.tolerance == 0.25 and 0 < prof.coverage <= 1.0
    assert prof.within_tolerance == (abs(1 - prof.coverage) <= 0.25)
    assert prof.plain_total_ms > 0


def test_bottlenecks_threshold_and_seed_access(cnn, digits):
    from core import Profiler

    profiler = Profiler(cnn, runs=5, warmup=1, budget_s=0.02)
    report = profiler.profile(input_data=torch.randn(4, *digits.input_shape), device="cpu")
    for layer_name, metrics in report.items():
        assert {"time_ms", "percentage", "memory_mb", "flops"} <= set(metrics)
    hot = profiler.find_bottlenecks(threshold=0.05)
    assert all(lay.share >= 0.05 for lay in hot)
    assert [lay.time_ms for lay in hot] == sorted((lay.time_ms for lay in hot), reverse=True)
    assert {lay.name for lay in hot} == {n for n, m in report.items()
                                         if m["percentage"] >= 5.0}
    from core.profiling import profile_chart

    bars = profile_chart(report, threshold=0.05).data[0]
    red = {name for name, c in zip(bars.y, bars.marker.color) if c == "#d62728"}
    assert red == {lay.name for lay in hot}


def test_onnx_profile_per_node(cnn, digits, tmp_path):
    from core import profile
    from core.artifacts import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(cnn, path, torch.randn(1, *digits.input_shape))
    prof = profile(path, digits, batch_size=8, runs=10, warmup=2, budget_s=0.02)
    kinds = {lay.kind for lay in prof.layers}
    assert prof.backend == "onnxruntime" and "Conv" in kinds and "Gemm" in kinds
    assert prof.runs == 10 and 0 < prof.coverage <= 1.0


def test_bad_input_one_clear_error(cnn, digits):
    from core import profile
    from core.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'threshold'"):
        profile(cnn, digits, runs=3, warmup=0, budget_s=0.01).find_bottlenecks(1.5)
    with pytest.raises(InvalidParameterError, match="'batch_size'"):
        profile(cnn, digits, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            profile(cnn, digits, device="cuda")


def test_cli_profile_writes_report(baseline_dir, tmp_path, capsys):
    from core.cli import run

    out = tmp_path / "prof"
    assert run(["profile", "--model", str(baseline_dir), "--batch-size", "16", "--runs", "5",
                "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["operation"] == "profile" and report["profile"]["layers"]
    assert "bottlenecks" in capsys.readouterr().out
