"""The studio driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from tests.helpers import onnx_zoo


def test_train_list_download_roundtrip(client, studio_server, tmp_path):
    _, ctx = studio_server
    status, _curve, table = client.predict(
        "digits", "cnn", None, "label", 2, 0.01, api_name="/train_baseline")
    assert "Trained" in status and "accuracy" in status
    figures = dict(zip(table["data"] and [r[0] for r in table["data"]],
                       [r[1] for r in table["data"]]))
    acc = float(figures["accuracy"])
    assert 0.5 < acc <= 1.0

    listed, _plot, choice = client.predict(api_name="/list_variants")
    assert len(listed["data"]) == 1
    bundle = client.predict(choice["value"] if isinstance(choice, dict) else choice,
                            api_name="/download_bundle")
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        assert {"model.onnx", "report.json", "MODEL_CARD.md", "recipe.yaml"} <= names
        zf.extract("model.onnx", tmp_path)
    # The downloaded model reproduces the reported accuracy with onnxruntime alone.
    from core.data import load_dataset

    data = load_dataset("digits")
    assert abs(onnx_zoo.ort_accuracy(tmp_path, data.X_test, data.y_test) - acc) < 1e-3


def test_sessions_are_isolated(client, studio_server):
    from gradio_client import Client

    url, ctx = studio_server
    client.predict("wine", "mlp", None, "label", 1, 0.01, api_name="/train_baseline")
    mine, _, choice = client.predict(api_name="/list_variants")
    other = Client(url, analytics_enabled=False, verbose=False)
    theirs, _, _ = other.predict(api_name="/list_variants")
    assert len(mine["data"]) >= 1 and not theirs["data"]
    value = choice["value"] if isinstance(choice, dict) else choice
    with pytest.raises(Exception, match="not found"):
        other.predict(value, api_name="/download_bundle")


def test_only_session_folders_are_served(studio_server):
    """The job store (owners and their tokens) beside the sessions is never downloadable."""
    import httpx

    url, ctx = studio_server
    secret = ctx.root / "jobs.sqlite"
    secret.write_bytes(b"SQLite format 3\x00 owners and tokens")
    inside = ctx.session_dir("probe-session") / "note.txt"
    inside.write_text("mine")
    for path, allowed in ((secret, False), (inside, True)):
        r = httpx.get(f"{url}gradio_api/file={path}")
        assert (r.status_code == 200) is allowed, (path, r.status_code)


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x04\x95 pickle bytes", "pickle"),
    (b"just some text, not a model", "not a model file"),
])
def test_bad_model_upload_is_refused(client, tmp_path, payload, message):
    from gradio_client import handle_file

    bad = tmp_path / "model.onnx"
    bad.write_bytes(payload)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(bad)), "digits", None, "label", api_name="/use_model")


def test_bad_csv_and_epochs(client, tmp_path):
    from gradio_client import handle_file

    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n1,2,0\n3,,1\n" + "1,2,0\n" * 20)
    with pytest.raises(Exception, match="missing values"):
        client.predict("digits", "mlp", handle_file(str(csv)), "label", 1, 0.01,
                       api_name="/train_baseline")
    with pytest.raises(Exception, match="epochs|minimum"):
        client.predict("digits", "cnn", None, "label", 0, 0.01, api_name="/train_baseline")


def test_uploaded_onnx_model_is_measured(client, baseline_dir):
    from gradio_client import handle_file

    status, table = client.predict(handle_file(str(baseline_dir / "model.onnx")), "digits",
                                   None, "label", api_name="/use_model")
    assert "Measured" in status
    assert np.isfinite(float(dict((r[0], r[1]) for r in table["data"])["accuracy"]))


def test_old_sessions_are_cleaned_up(tmp_path):
    import os
    import time

    from studio.context import StudioContext

    ctx = StudioContext(tmp_path, session_ttl_hours=1)
    old, fresh = ctx.session_dir("old"), ctx.session_dir("fresh")
    (old / "f").write_text("x")
    past = time.time() - 7200
    os.utime(old / "f", (past, past))
    os.utime(old, (past, past))
    (fresh / "f").write_text("x")
    assert ctx.cleanup_sessions() == [old.name]
    assert not old.exists() and fresh.exists()


def test_session_folders_do_not_reveal_the_session_hash(tmp_path):
    """A download link names the folder; the folder id is keyed, so the link cannot be used
    to act as its session (which only the session hash does)."""
    from studio.context import StudioContext

    ctx = StudioContext(tmp_path)
    folder = ctx.session_id("abc123session")
    assert "abc123session" not in folder and len(folder) == 32
    assert StudioContext(tmp_path).session_id("abc123session") == folder  # stable per root
    assert StudioContext(tmp_path / "other").session_id("abc123session") != folder
    assert ctx.session_id("another-session") != folder
