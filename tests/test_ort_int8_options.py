"""ONNX Runtime INT8 options: reduce_range (7-bit weights) and its CPU-dependent default."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import InvalidParameterError

FAST = {"budget_s": 0.02, "memory": False, "batch_sizes": (1,)}
ORT_INT8 = ("ort-static-int8", "ort-dynamic-int8")


def _int8_weights(path) -> list[np.ndarray]:
    """The int8 weight tensors written in an ONNX file (QDQ or MatMulInteger form)."""
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]


@pytest.fixture()
def cpu_without_vnni(monkeypatch):
    """Make this CPU read as one without INT8 dot-product instructions (AVX2 only)."""
    import core.measure
    from core.measure import _environment

    for module in (core.measure, _environment):
        monkeypatch.setattr(module, "int8_dot_product", lambda: False)


@pytest.fixture()
def cpu_with_vnni(monkeypatch):
    import core.measure
    from core.measure import _environment

    for module in (core.measure, _environment):
        monkeypatch.setattr(module, "int8_dot_product", lambda: True)


@pytest.mark.parametrize("method, per_channel", [("ort-static-int8", False),
                                                 ("ort-static-int8", True),
                                                 ("ort-dynamic-int8", False)])
def test_reduce_range_writes_7_bit_weights(method, per_channel, baseline_dir, tmp_path):
    """ORT's reduce_range quantizes weights to [-64, 64]; without it they span [-127, 127]."""
    from core.quantization import make_config, quantize

    spans = {}
    for reduce in (True, False):
        config = make_config(method, {"reduce_range": reduce, "per_channel": per_channel,
                                      "calibration_size": 64})
        run = quantize(baseline_dir, None, config, out_dir=tmp_path / str(reduce),
                       measure_options=FAST)
        weights = _int8_weights(run.run_dir / "model.onnx")
        assert weights, "no int8 weights written"
        spans[reduce] = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        assert run.report["config"]["reduce_range"] is reduce
        assert run.report["quantization"]["weight_bits"] == (7 if reduce else 8)
    assert spans[True] <= 64 < spans[False]
    assert spans[False] == 127


@pytest.mark.parametrize("method", [*ORT_INT8, "torch-static-int8", "torch-dynamic-int8",
                                    "torch-qat-int8"])
@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_a_bad_reduce_range_is_refused_naming_it(method, bad):
    from core.quantization import make_config

    with pytest.raises(InvalidParameterError) as err:
        make_config(method, {"reduce_range": bad})
    assert "reduce_range" in str(err.value) and "true or false" in str(err.value)


def test_the_default_follows_the_cpu_and_is_recorded(cpu_without_vnni):
    """Without VNNI the default is 7-bit weights for U8S8 and dynamic INT8 (their uint8 x
    int8 kernels saturate there), 8-bit for S8S8; to_dict() carries the resolved value."""
    from core.quantization import make_config

    static = make_config("ort-static-int8")
    assert static.reduce_range is True and static.to_dict()["reduce_range"] is True
    assert make_config("ort-dynamic-int8").to_dict()["reduce_range"] is True
    assert make_config("ort-static-int8", {"quant_types": "S8S8"}).reduce_range is False
    assert make_config("ort-static-int8", {"reduce_range": False}).reduce_range is False


def test_a_replay_keeps_the_resolved_value_on_another_cpu(monkeypatch):
    import core.measure
    from core.quantization import make_config
    from core.quantization._config import OrtStaticInt8Config

    monkeypatch.setattr(core.measure, "int8_dot_product", lambda: False)
    made_without_vnni = make_config("ort-static-int8").to_dict()
    monkeypatch.setattr(core.measure, "int8_dot_product", lambda: True)
    assert make_config("ort-static-int8").reduce_range is False  # this CPU's own default
    replay = OrtStaticInt8Config.from_dict(json.loads(json.dumps(made_without_vnni)))
    assert replay.reduce_range is True and replay.to_dict() == made_without_vnni


def test_a_config_written_before_reduce_range_replays_with_8_bit_weights(cpu_without_vnni):
    from core.quantization import make_config
    from core.quantization._config import OrtDynamicInt8Config, OrtStaticInt8Config

    old = {"method": "ort-static-int8", "schema_version": 1, "quant_types": "U8S8"}
    assert OrtStaticInt8Config.from_dict(old).reduce_range is False
    assert make_config("ort-static-int8", old).reduce_range is False
    old_dynamic = {"method": "ort-dynamic-int8", "schema_version": 1}
    assert OrtDynamicInt8Config.from_dict(old_dynamic).reduce_range is False
    assert make_config("ort-static-int8", {"quant_types": "U8S8"}).reduce_range is True


def test_report_says_why_and_warns_only_where_8_bits_can_saturate(cpu_without_vnni,
                                                                  baseline_dir, tmp_path):
    from core.quantization import quantize

    default = quantize(baseline_dir, None, "ort-static-int8", out_dir=tmp_path / "d",
                       measure_options=FAST).report
    info = default["quantization"]
    assert info["reduce_range"] is True and info["weight_bits"] == 7
    assert "no INT8 dot-product" in info["reduce_range_why"]
    assert not any("reduce_range=False" in w for w in default["warnings"])
    full = quantize(baseline_dir, None, "ort-static-int8", out_dir=tmp_path / "f",
                    measure_options=FAST, reduce_range=False).report
    assert any("reduce_range=True" in w and "saturate" in w for w in full["warnings"])
    s8 = quantize(baseline_dir, None, "ort-static-int8", out_dir=tmp_path / "s",
                  measure_options=FAST, quant_types="S8S8").report
    assert s8["config"]["reduce_range"] is False
    assert not any("saturate" in w for w in s8["warnings"])


def test_no_saturation_warning_on_a_cpu_with_vnni(cpu_with_vnni, baseline_dir, tmp_path):
    from core.quantization import quantize

    report = quantize(baseline_dir, None, "ort-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=FAST).report
    assert report["config"]["reduce_range"] is False
    assert report["quantization"]["weight_bits"] == 8
    assert not any("saturate" in w for w in report["warnings"])


def test_cli_reduce_range_flags(baseline_dir, tmp_path, monkeypatch):
    import functools

    import core.measure
    from core.cli import run

    monkeypatch.setattr(core.measure, "measure_many",
                        functools.partial(core.measure.measure_many, **FAST))
    errors: list[str] = []
    for flag, method, want in (("--no-reduce-range", "ort-dynamic-int8", False),
                               ("--reduce-range", "ort-static-int8", True),
                               ("--no-reduce-range", "torch-dynamic-int8", False)):
        out = tmp_path / method
        extra = ["--no-compile"] if method.startswith("torch-") else []
        code = run(["quantize", "--model", str(baseline_dir), "--method", method, flag, *extra,
                    "--calibration-size", "64", "--out", str(out)], err=errors.append)
        assert code == 0, errors
        report = json.loads((out / "report.json").read_text())
        assert report["config"]["reduce_range"] is want
        done = report["quantization"]  # what the method did (torch: under its "pt2e" entry)
        assert done.get("reduce_range", done.get("pt2e", {}).get("reduce_range")) is want
    code = run(["quantize", "--model", str(baseline_dir), "--method", "ort-fp16",
                "--reduce-range", "--out", str(tmp_path / "bad")], err=errors.append)
    assert code == 2 and "reduce_range" in errors[-1] and "ort-fp16" in errors[-1]
    assert not (tmp_path / "bad").exists()
