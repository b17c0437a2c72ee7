"""The Quantization tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import json
import zipfile

import pytest

ARGS = dict(calib="minmax", size=64, channel=False, sens=True, types="U8S8", block=32,
            kernels="x86", epochs=1, rate=1e-3)


def _quantize(client, choice, method, tolerance="off", keep=(), **kw):
    a = {**ARGS, **kw}
    out = client.predict(choice, method, a["calib"], a["size"], a["channel"], tolerance,
                         a["sens"], a["types"], a["block"], a["kernels"], a["epochs"],
                         a["rate"], list(keep), api_name="/quantize")
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
