"""Quantization: a contract suite over every registered method, bad input, tolerance, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidParameterError, StudioError
from core.registry import list_methods

FAST = {"budget_s": 0.02, "memory": False}
METHODS = list_methods("quantization")
OPTIONS = {"torch-qat-int8": {"epochs": 1}}


def _artifact(run_dir: Path) -> Path:
    onnx = run_dir / "model.onnx"
    return onnx if onnx.is_file() else run_dir / "model.pt2"


def test_every_method_is_registered():
    assert set(METHODS) == {
        "ort-static-int8", "ort-dynamic-int8", "ort-fp16", "ort-int4", "torch-dynamic-int8",
        "torch-static-int8", "torch-qat-int8", "torch-fp16", "torch-bf16"}


@pytest.mark.parametrize("method", METHODS)
def test_method_contract(method, baseline_dir, digits, tmp_path):
    """Artifact loads, the report's figures equal an independent re-measurement of it."""
    from core.artifacts import read_report
    from core.measure import evaluate, onnx_param_counts
    from core.quantization import load_artifact, make_config, quantize
    from core.runs import open_variant

    out = tmp_path / "q"
    config = make_config(method, {"calibration_size": 64, **OPTIONS.get(method, {})})
    result = quantize(baseline_dir, None, config, out_dir=out, measure_options=FAST)
    report = result.report
    assert result.run_dir == out and not (tmp_path / "q.partial").exists()
    assert read_report(out) == json.loads(json.dumps(report))
    assert report["operation"] == "quantize" and report["method"] == method
    assert report["parent"] == baseline_dir.name
    assert report["config"]["calibration_size"] == 64

    artifact = _artifact(out)
    assert artifact.suffix == (".onnx" if method.startswith("ort-") else ".pt2")
    model = load_artifact(artifact)  # ORT session or torch.export program's module
    res = report["result"]
    assert res["size_bytes"] == artifact.stat().st_size
    assert res["accuracy"] == pytest.approx(evaluate(model, digits, "test").accuracy, abs=1e-9)
    if artifact.suffix == ".onnx":
        assert (res["params"], res["nonzero_params"]) == onnx_param_counts(artifact)
        assert not any("no ONNX form" in w for w in report["warnings"])
    else:
        assert res["params"] > 0
        assert any("no ONNX form" in w and "torch.export" in w for w in report["warnings"])
    entry = next(a for a in report["artifacts"] if a["path"] == artifact.name)
    assert entry["bytes"] == artifact.stat().st_size
    base = report["baseline"]
    assert base["size_bytes"] == (baseline_dir / "model.safetensors").stat().st_size
    assert abs(res["accuracy"] - base["accuracy"]) <= 0.1
    assert report["ratios"]["size_reduction"] == pytest.approx(
        base["size_bytes"] / res["size_bytes"])
    # the run folder opens as a variant for the other tabs, with its input shape known
    variant = open_variant(out)
    assert tuple(variant.loaded.input_shape) == digits.input_shape


def test_int8_is_smaller_and_int4_packs_matmuls(baseline_dir, tmp_path):
    import onnx

    from core.quantization import quantize

    r8 = quantize(baseline_dir, None, "ort-static-int8", out_dir=tmp_path / "s",
                  measure_options=FAST).report
    assert r8["ratios"]["size_reduction"] > 1.5
    ops = {n.op_type for n in onnx.load(str(tmp_path / "s" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    quantize(baseline_dir, None, "ort-int4", out_dir=tmp_path / "i4", measure_options=FAST)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "i4" / "model.onnx")).graph.node}
    assert "MatMulNBits" in ops and "Gemm" not in ops


def test_dynamic_int8_leaves_convolutions_and_says_why(baseline_dir, tmp_path):
    import onnx

    from core.quantization import quantize

    # a mapping config (what a to_dict() or a REST job holds) is taken like a config object
    report = quantize(baseline_dir, None, {"method": "ort-dynamic-int8"}, out_dir=tmp_path / "d",
                      measure_options=FAST).report
    ops = [n.op_type for n in onnx.load(str(tmp_path / "d" / "model.onnx")).graph.node]
    assert "ConvInteger" not in ops and "Conv" in ops
    note = next(w for w in report["warnings"] if "ConvInteger" in w)
    assert "ort-static-int8" in note
    assert "avx" in note.lower() or "instruction" in note  # names the ISA, or says unknown


# --- bad input -------------------------------------------------------------------------------
def test_unknown_method_lists_registered_ones():
    from core.quantization import make_config

    with pytest.raises(InvalidParameterError) as exc:
        make_config("int3-magic")
    for name in METHODS:
        assert name in str(exc.value)


@pytest.mark.parametrize("size", [0, 10_000])
def test_calibration_size_is_refused_with_the_range(size, baseline_dir, digits, tmp_path):
    from core.quantization import make_config, quantize

    if size < 1:  # refused by the config itself (no data needed)
        with pytest.raises(InvalidParameterError, match=r"'calibration_size'.*\[1, "):
            make_config("ort-static-int8", {"calibration_size": size})
        return
    with pytest.raises(InvalidParameterError) as exc:
        quantize(baseline_dir, None, make_config("ort-static-int8", {"calibration_size": size}),
                 out_dir=tmp_path / "q", measure_options=FAST)
    assert f"[1, {len(digits.y_train)}]" in str(exc.value) and "calibration_size" in str(exc.value)
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.partial").exists()


def test_default_calibration_fits_a_small_train_split(tmp_path):
    """wine has 115 training rows: the default (256) shrinks to them; no error."""
    from core.quantization import quantize
    from core.runs import train_baseline
    from core.training import TrainConfig

    base = tmp_path / "wine"
    train_baseline("mlp", "wine", out_dir=base, config=TrainConfig(epochs=2),
                   measure_options=FAST)
    for method in ("ort-static-int8", "ort-dynamic-int8"):
        res = quantize(base, None, method, out_dir=tmp_path / method, measure_options=FAST)
        assert res.report["result"]["accuracy"] > 0.5
    static = json.loads((tmp_path / "ort-static-int8" / "report.json").read_text())
    assert static["config"]["calibration_size"] == 115


def test_calibration_reader_keeps_batches_whole():
    """50 rows with a batch of 32: two whole batches, the tail padded from the start."""
    from core.quantization._ort import _Reader

    X = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    reader = _Reader(X, "x", batch_size=32)
    batches = [b["x"] for b in iter(reader.get_next, None)]
    assert [len(b) for b in batches] == [32, 32]
    np.testing.assert_array_equal(np.concatenate(batches)[:50], X)
    np.testing.assert_array_equal(batches[1][18:], X[:14])


@pytest.mark.parametrize("calibration", ["entropy", "percentile"])
def test_histogram_calibration_on_a_short_last_batch(calibration, baseline_dir, digits, tmp_path):
    """ORT's entropy/percentile calibrators crashed ('inhomogeneous shape') on 50 rows."""
    from core.measure import evaluate
    from core.quantization import load_artifact, make_config, quantize

    config = make_config("ort-static-int8", {"calibration": calibration,
                                             "calibration_size": 50})
    report = quantize(baseline_dir, None, config, out_dir=tmp_path / "q",
                      measure_options=FAST).report
    assert report["config"]["calibration_size"] == 50
    model = load_artifact(tmp_path / "q" / "model.onnx")
    assert evaluate(model, digits, "test").accuracy > 0.5


def test_option_of_another_method_is_refused():
    from core.quantization import make_config

    with pytest.raises(InvalidParameterError, match="calibration"):
        make_config("ort-dynamic-int8", {"calibration": "entropy"})
    with pytest.raises(InvalidParameterError, match="calibration"):
        make_config("ort-static-int8", {"calibration": "median"})
    assert make_config("ort-dynamic-int8", {"calibration": "entropy"}, strict=False).method \
        == "ort-dynamic-int8"


def test_already_quantized_and_onnx_only_inputs(baseline_dir, digits, tmp_path):
    from core.quantization import quantize

    quantize(baseline_dir, None, "ort-fp16", out_dir=tmp_path / "a", measure_options=FAST)
    with pytest.raises(StudioError, match="already quantized"):
        quantize(tmp_path / "a", None, "ort-static-int8", out_dir=tmp_path / "b")
    # an ONNX file: ort methods work on it directly (torch ones on its converted module)
    onnx_file = baseline_dir / "model.onnx"
    r = quantize(onnx_file, digits, "ort-dynamic-int8", out_dir=tmp_path / "c",
                 measure_options=FAST)
    assert r.report["baseline"]["size_bytes"] == onnx_file.stat().st_size


def test_unexportable_model_names_the_operator(digits, tmp_path):
    import torch

    from core.quantization import quantize

    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(torch.special.zeta(x.flatten(1), 2.0 + x.flatten(1)))

    with pytest.raises(StudioError) as exc:
        quantize(Odd(), digits, "ort-static-int8", out_dir=tmp_path / "q", measure_options=FAST)
    assert "zeta" in str(exc.value) and "torch" in str(exc.value)


# --- accuracy-aware ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fragile_mlp(digits):
    """An MLP whose first layer has one huge weight on an always-zero pixel.

    FP32 outputs do not change (the pixel is 0), but per-tensor INT8 of that layer rounds
    every other weight to 0: quantizing it alone destroys accuracy.
    """
    import torch

    from core.models import model_for_data
    from core.training import TrainConfig, train

    assert np.all(digits.X_train.reshape(len(digits.X_train), -1)[:, 0] == 0)
    model = model_for_data("mlp", digits.input_shape, digits.num_classes, hidden_dims=[32])
    train(model, digits, TrainConfig(epochs=3, lr=0.01))
    with torch.no_grad():
        model.features[1].weight[0, 0] = 1000.0
    return model


def test_tolerance_keeps_the_sensitive_layer_in_float(fragile_mlp, digits, tmp_path):
    from core.quantization import make_config, quantize

    config = make_config("ort-static-int8", {"tolerance": 0.02, "calibration_size": 128})
    report = quantize(fragile_mlp, digits, config, out_dir=tmp_path / "q",
                      measure_options=FAST).report
    q = report["quantization"]
    sens = {s["layer"]: s["delta"] for s in q["sensitivity"]}
    worst = min(sens, key=sens.get)
    assert sens[worst] < -0.3  # quantizing the fragile layer alone collapses accuracy
    assert q["kept_float"] == [worst]
    assert q["tolerance"]["met"] and q["tolerance"]["steps"][0]["drop"] > 0.02
    assert q["fp32_val_accuracy"] - q["quantized_val_accuracy"] <= 0.02
    assert any(worst in w and "float" in w for w in report["warnings"])
    # the kept layer really is float in the artifact: its weight is still an FP32 initializer
    import onnx

    graph = onnx.load(str(tmp_path / "q" / "model.onnx")).graph
    kept_node = next(n for n in graph.node if n.name == worst)
    assert kept_node.op_type in ("Gemm", "MatMul")
    fp32 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert kept_node.input[1] in fp32


def test_sensitivity_without_tolerance_torch(fragile_mlp, digits, tmp_path):
    from core.quantization import make_config, quantize

    config = make_config("torch-dynamic-int8", {"sensitivity": True})
    report = quantize(fragile_mlp, digits, config, out_dir=tmp_path / "q",
                      measure_options=FAST).report
    layers = [s["layer"] for s in report["quantization"]["sensitivity"]]
    assert layers == ["features.1", "classifier"]
    assert report["quantization"]["kept_float"] == []


def test_tolerance_refused_for_whole_model_casts(baseline_dir, tmp_path):
    from core.quantization import make_config, quantize

    with pytest.raises(InvalidParameterError, match="tolerance"):
        quantize(baseline_dir, None, make_config("torch-bf16", {"tolerance": 0.01}),
                 out_dir=tmp_path / "q")
    with pytest.raises(InvalidParameterError, match="tolerance"):
        make_config("torch-qat-int8", {"tolerance": 0.01})


# --- honest speed ------------------------------------------------------------------------------
def test_slower_than_fp32_is_warned_with_the_isa(baseline_dir, tmp_path, monkeypatch):
    """Force the timing so that the result is slower; the report must say so, naming the ISA."""
    import core.measure._measure as measure_mod
    from core.measure import int8_dot_product, isa_text
    from core.quantization import quantize

    def fake_latency(preds, X, *, batch_sizes=(1, 64), **kw):
        slow = {"baseline": 1.0, "result": 3.0}
        return {name: {str(bs): {"p50": slow.get(name, 1.0) * bs, "p95": slow.get(name, 1.0) * bs,
                                 "runs": 1}
                       for bs in batch_sizes} for name in preds}

    monkeypatch.setattr(measure_mod, "interleaved_latency", fake_latency)
    report = quantize(baseline_dir, None, "ort-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=FAST).report
    assert report["ratios"]["speedup_b1"] == pytest.approx(1 / 3)
    slow_notes = [w for w in report["warnings"] if "slower than the baseline" in w]
    assert len(slow_notes) == 2
    # and against ONNX Runtime FP32 of the same weights, timed in the same run
    vs_ort = report["references"]["onnx-fp32"]
    assert vs_ort["ratios"]["speedup_b64"] == pytest.approx(1 / 3)
    assert sum("slower than ONNX Runtime FP32" in w for w in report["warnings"]) == 2
    assert all(isa_text() in w for w in slow_notes) and "batch 1" in slow_notes[0]
    int8_notes = [w for w in report["warnings"] if "dot-product" in w]
    assert len(int8_notes) == (0 if int8_dot_product() else 1)


def test_real_run_warnings_match_measured_ratios(baseline_dir, tmp_path):
    """The report warns at exactly the batch sizes whose verdict is not 'faster'."""
    from core.measure import FASTER, speed_verdict
    from core.quantization import quantize

    report = quantize(baseline_dir, None, "ort-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=FAST).report
    speedups = {k: v for k, v in report["ratios"].items() if k.startswith("speedup_b")}
    assert set(report["speed_verdicts"]) == set(speedups) == {"speedup_b1", "speedup_b64"}
    for key, value in speedups.items():
        verdict = report["speed_verdicts"][key]
        assert verdict == speed_verdict(value)
        said = [w for w in report["warnings"] if "than the baseline at batch "
                f"{key.removeprefix('speedup_b')} " in w]
        assert len(said) == (verdict != FASTER)
        assert all(("no faster" in w) == (verdict != "slower") for w in said)


# --- API and CLI -------------------------------------------------------------------------------
def test_facade_and_lazy_exports(fragile_mlp, digits, tmp_path):
    import core
    from core.quantization import __all__ as names

    assert core.quantize is not None and core.quantize_model is not None
    for name in names:
        assert getattr(__import__("core.quantization", fromlist=[name]), name) is not None
    import onnx

    core.quantize_model(fragile_mlp, digits, method="ort-int4", block_size=16,
                        out_dir=tmp_path / "f", measure_options=FAST)
    # the option reached the quantizer: the packed MatMuls use blocks of 16
    graph = onnx.load(str(tmp_path / "f" / "model.onnx")).graph
    blocks = [a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute
              if a.name == "block_size"]
    assert blocks and set(blocks) == {16}


def test_cli_quantize(baseline_dir, tmp_path, monkeypatch):
    import functools

    import core.measure
    from core.cli import run

    fast = functools.partial(core.measure.measure_many, **FAST)
    monkeypatch.setattr(core.measure, "measure_many", fast)

    errors: list[str] = []
    out = tmp_path / "cli"
    code = run(["quantize", "--model", str(baseline_dir), "--method", "ort-static-int8",
                "--calibration", "percentile", "--per-channel", "--calibration-size", "64",
                "--out", str(out)], err=errors.append)
    assert code == 0, errors
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["calibration"] == "percentile" and report["config"]["per_channel"]
    code = run(["quantize", "--model", str(baseline_dir), "--method", "ort-static-int8",
                "--keep-float", "features.0", "--out", str(tmp_path / "mixed")],
               err=errors.append)
    assert code == 0, errors
    mixed = json.loads((tmp_path / "mixed" / "report.json").read_text())
    assert mixed["quantization"]["kept_float"] == ["/features/features.0/Conv"]
    code = run(["quantize", "--model", str(baseline_dir), "--method", "ort-static-int8",
                "--calibration-size", "0", "--out", str(tmp_path / "bad")], err=errors.append)
    assert code == 2 and "calibration_size" in errors[-1] and "[1, " in errors[-1]
    code = run(["quantize", "--model", str(baseline_dir), "--method", "ort-fp16",
                "--calibration", "entropy", "--out", str(tmp_path / "bad")], err=errors.append)
    assert code == 2 and "ort-fp16" in errors[-1]
    assert not (tmp_path / "bad").exists()


def test_cancel_leaves_nothing_behind(baseline_dir, tmp_path):
    from core.callbacks import Callbacks
    from core.errors import CancelledError
    from core.quantization import make_config, quantize

    seen: list[str] = []
    cb = Callbacks(on_progress=lambda f, m: (seen.append(m), cb.cancel.cancel())
                   if "Calibrating" in m else None)
    with pytest.raises(CancelledError):
        quantize(baseline_dir, None, make_config("ort-static-int8", {"calibration_size": 64}),
                 out_dir=tmp_path / "q", callbacks=cb, measure_options=FAST)
    assert seen and not (tmp_path / "q").exists() and not (tmp_path / "q.partial").exists()
