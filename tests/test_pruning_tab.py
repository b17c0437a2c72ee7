"""The Pruning tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import zipfile

import pytest


def _prune(client, choice, method, sparsity=0.5, schedule="oneshot", steps=1, epochs=1):
    return client.predict(choice, method, sparsity, schedule, steps, epochs, 0.002, 0, "heads",
                          "", api_name="/prune")


def test_prune_tab_runs_streams_and_bundles(client):
    client.predict("digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    choice = client.predict(api_name="/prune_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    assert value and value.startswith("train-")

    job = client.submit(value, "structured-l2", 0.5, "gradual", 2, 1, 0.002, 0, "heads", "",
                        api_name="/prune")
    status, curve, table, layers, bundle = job.result()
    assert "structured-l2" in status and "speed-up" in status
    headers, rows = table["headers"], table["data"]
    assert len(rows) == 2 and rows[0][0].startswith("input")
    params = headers.index("params")
    assert rows[1][params] < 0.5 * rows[0][params]
    assert curve is not None and layers is not None
    # the live curve was streamed: some intermediate output carried a figure
    assert any(out[1] is not None for out in job.outputs()[:-1])
    with zipfile.ZipFile(bundle) as zf:
        assert {"model.onnx", "model.safetensors", "report.json"} <= set(zf.namelist())

    status, _, table, _, bundle = _prune(client, value, "global-magnitude", 0.8, epochs=0)
    assert "no speed-up by itself" in status
    with zipfile.ZipFile(bundle) as zf:
        assert "model.sparse.npz" in zf.namelist()


def test_prune_tab_bad_input_is_a_clear_error(client):
    with pytest.raises(Exception, match="not found"):
        _prune(client, "train-doesnotexist", "structured-l2")
    with pytest.raises(Exception, match="steps"):
        _prune(client, None, "structured-l2", schedule="gradual", steps=1)
