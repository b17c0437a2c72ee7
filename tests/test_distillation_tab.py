"""The Distillation tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import zipfile

import pytest


def test_distill_tab_runs_streams_and_bundles(client):
    client.predict("digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    teacher, _ = client.predict(api_name="/distill_variants")
    value = teacher["value"] if isinstance(teacher, dict) else teacher
    assert value and value.startswith("train-")
    job = client.submit(value, "soft-target", 0.5, 4.0, 0.7, 2, 0.2, 1.0, [], None,
                        "steps", api_name="/distill")
    status, curve, table, bundle = job.result()
    assert "gain" in status and "soft-target" in status
    rows = table["data"]
    assert len(rows) == 3 and rows[0][0].startswith("teacher")
    assert rows[2][0].startswith("label-only")
    params = table["headers"].index("params")
    assert rows[1][params] < rows[0][params] and rows[1][params] == rows[2][params]
    assert any(out[1] is not None for out in job.outputs()[:-1])  # live curves streamed
    with zipfile.ZipFile(bundle) as zf:
        assert {"model.onnx", "model.safetensors", "report.json"} <= set(zf.namelist())


def test_distill_tab_bad_input_is_a_clear_error(client):
    with pytest.raises(Exception, match="temperature"):
        client.predict(None, "soft-target", 0.5, 0.0, 0.7, 1, 1.0, 1.0, [], None,
                       "steps", api_name="/distill")
    with pytest.raises(Exception, match="not found"):
        client.predict("train-doesnotexist", "soft-target", 0.5, 4.0, 0.7, 1, 1.0, 1.0, [],
                       None, "steps", api_name="/distill")
