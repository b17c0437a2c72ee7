"""Mixed precision by named layer: layers the user names stay float, the rest are INT8."""

from __future__ import annotations

import onnx
import pytest

from core.errors import InvalidParameterError
from core.quantization import make_config, quantize

FAST = {"budget_s": 0.02, "memory": False}


def _float_weight_layers(path) -> set[str]:
    """Names of Conv/Gemm/MatMul nodes whose weight is a float initializer (not dequantized)."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return {n.name for n in model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in inits}


def test_named_layers_stay_float_and_seed_calibration_names_work(baseline_dir, tmp_path):
    cfg = make_config("ort-static-int8", {"exclude": ["features.0", "classifier"],
                                          "calibration": "kl"})
    assert cfg.calibration == "entropy"
    run = quantize(baseline_dir, None, cfg, out_dir=tmp_path / "q", measure_options=FAST)
    kept = set(run.report["quantization"]["kept_float"])
    assert kept == {"/features/features.0/Conv", "/classifier/Gemm"}
    assert _float_weight_layers(tmp_path / "q" / "model.onnx") == kept  # the middle conv is INT8


def test_an_unknown_layer_name_is_refused_before_work(baseline_dir, tmp_path):
    cfg = make_config("ort-static-int8", {"exclude": ["conv_that_is_not_there"]})
    with pytest.raises(InvalidParameterError, match="exclude.*conv_that_is_not_there"):
        quantize(baseline_dir, None, cfg, out_dir=tmp_path / "q", measure_options=FAST)
    assert not (tmp_path / "q").exists()
