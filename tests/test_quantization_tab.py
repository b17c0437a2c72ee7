"""The Quantization tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import json
import zipfile

import pytest

ARGS = dict(calib="minmax", size=64, channel=False, sens=True, types="U8S8", block=32,
            kernels="x86", epochs=1, rate=1e-3)


def _quantize(client, choice, method, tolerance="off", keep=(), weights="cpu-default", **kw):
    a = {**ARGS, **kw}
    out = client.predict(choice, method, a["calib"], a["size"], a["channel"], tolerance,
                         a["sens"], a["types"], a["block"], a["kernels"], a["epochs"],
                         a["rate"], list(keep), weights, api_name="/quantize")
    return out[:5]  # the sixth output is the keep-in-float picker's choices


def _bundled_report(bundle) -> dict:
    with zipfile.ZipFile(bundle) as zf:
        return json.loads(zf.read("report.json"))


def test_quantize_tab_runs_compares_and_bundles(client, studio_server):
    client.predict("digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    choice = client.predict(api_name="/quantize_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    assert value and value.startswith("train-")

    status, table, sens, scatter, bundle = _quantize(client, value, "ort-static-int8", "0.05")
    assert "ort-static-int8" in status and "speed-up" in status
    rows = table["data"]
    headers = table["headers"]
    assert len(rows) == 2 and rows[0][headers.index("method")] == "FP32 baseline"
    assert rows[1][headers.index("method")] == "ort-static-int8"
    assert "★" in rows[1][headers.index("note")] or rows[1][headers.index("Δ accuracy (pt)")] \
        < -5
    assert sens is not None and scatter is not None
    with zipfile.ZipFile(bundle) as zf:
        assert {"model.onnx", "report.json", "MODEL_CARD.md", "recipe.yaml"} <= set(zf.namelist())

    # Mixed precision by layer: the chart's most harmed layer picked to stay in float.
    sens_rows = _bundled_report(bundle)["quantization"]["sensitivity"]
    worst = min(sens_rows, key=lambda r: r["delta"])["layer"]
    _, _, _, _, kept_bundle = _quantize(client, value, "ort-static-int8", keep=[worst],
                                        sens=False)
    assert _bundled_report(kept_bundle)["quantization"]["kept_float"] == [worst]

    status, table, _, _, bundle = _quantize(client, value, "torch-dynamic-int8")
    assert "no ONNX form" in status
    assert [r[table["headers"].index("method")] for r in table["data"]] == [
        "FP32 baseline", "ort-static-int8", "ort-static-int8", "torch-dynamic-int8"]
    with zipfile.ZipFile(bundle) as zf:
        assert "model.pt2" in zf.namelist()
    # Every run is a job of this session, listed in the Jobs tab.
    jobs, _ = client.predict(api_name="/list_jobs")
    kinds = [(r[jobs["headers"].index("kind")], r[jobs["headers"].index("status")])
             for r in jobs["data"]]
    assert kinds.count(("quantize", "succeeded")) == 3 and ("train", "succeeded") in kinds
    with pytest.raises(Exception, match=r"calibration_size.*\[1, "):
        _quantize(client, value, "ort-static-int8", size=0)


def test_quantize_tab_bad_input_is_a_clear_error(client):
    with pytest.raises(Exception, match="not found"):
        _quantize(client, "train-doesnotexist", "ort-static-int8")
    with pytest.raises(Exception, match="tolerance.*0.01"):
        _quantize(client, "train-doesnotexist", "ort-static-int8", tolerance="lots")


def test_weights_range_reaches_the_report(client):
    """The weights-range dropdown chooses ORT INT8's reduce_range as the CLI's flags do; its
    'CPU default' is what this CPU resolves to, and the report records the choice."""
    from core.quantization._config import saturates_u8s8

    client.predict("digits", "cnn", None, "label", 1, 0.01, api_name="/train_baseline")
    choice = client.predict(api_name="/quantize_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    seen = {}
    for weights in ("7-bit", "8-bit", "cpu-default"):
        bundle = _quantize(client, value, "ort-dynamic-int8", weights=weights, sens=False)[4]
        report = _bundled_report(bundle)
        seen[weights] = (report["config"]["reduce_range"],
                         report["quantization"]["weight_bits"])
    default = saturates_u8s8()
    assert seen == {"7-bit": (True, 7), "8-bit": (False, 8),
                    "cpu-default": (default, 7 if default else 8)}
    with pytest.raises(Exception, match="6-bit.*'8-bit', '7-bit'"):
        _quantize(client, value, "ort-static-int8", weights="6-bit")


def test_weights_range_is_offered_only_where_the_cpu_decides():
    from studio.tabs.quantization import (
        has_weight_range,
        reduce_range_option,
        weight_range_choices,
    )

    assert [m for m in ("ort-static-int8", "ort-dynamic-int8", "ort-fp16", "ort-int4",
                        "torch-static-int8", "torch-dynamic-int8") if has_weight_range(m)] == [
        "ort-static-int8", "ort-dynamic-int8"]
    # a value left in the hidden dropdown does not reach torch INT8 (its reduce_range is
    # the activations' range, a different option)
    assert reduce_range_option("8-bit", "torch-static-int8") is None
    assert reduce_range_option("8-bit", "ort-static-int8") is False
    with pytest.raises(Exception, match="reduce_range.*6-bit"):
        reduce_range_option("6-bit", "ort-static-int8")
    from core.quantization._config import saturates_u8s8

    label = weight_range_choices()[0][0]
    assert label.startswith(f"CPU default: {7 if saturates_u8s8() else 8}-bit here")
