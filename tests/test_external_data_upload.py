"""An ONNX model with external data (torch 2.13's default export writes model.onnx +
model.onnx.data) uploaded through the REST API and the UI: the .onnx and its data file go
together, are checked together and measured; anything else is refused with one message naming
base names, and a refused upload leaves nothing stored."""

from __future__ import annotations

import io
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import onnx_zoo
from tests.helpers.rest import FAST, rest_client, session, wait_job

LIMIT_MB = 0.05  # ~51 KB: the tiny export (~8 KB graph + ~18 KB data) fits


@pytest.fixture(scope="module")
def export(tmp_path_factory, digits) -> Path:
    """A tiny digits CNN exported as users export it: model.onnx + model.onnx.data."""
    import torch

    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=6)
    out = tmp_path_factory.mktemp("export")
    onnx_zoo.export_default(net, out / "model.onnx", torch.from_numpy(digits.X_test[:1]))
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.data"]
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_external")
    with rest_client(root, measure_options=FAST, upload_limit_mb=LIMIT_MB) as client:
        yield client, root, session(client)


def _files(export: Path, **renamed: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    """The export's two files as multipart parts; ``renamed`` replaces/adds parts by name."""
    parts = {"model.onnx": (export / "model.onnx").read_bytes(),
             "model.onnx.data": (export / "model.onnx.data").read_bytes()}
    parts.update(renamed)
    return [("file", (name, content)) for name, content in parts.items() if content]


def _post(client, headers, files, kind: str = "model"):
    return client.post("/api/uploads", headers=headers, data={"kind": kind}, files=files)


def _stored(root: Path) -> list[str]:
    """Everything under the owners' upload folders (staging and incoming folders included)."""
    return sorted(str(p.relative_to(root)) for p in root.glob("jobs/*/uploads/**/*"))


def _graph(export: Path, *, location: str | None = None, dims: list[int] | None = None) -> bytes:
    """The export's graph with every external-data location set to ``location``, or its first
    external tensor declaring ``dims``."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    model = onnx.load(str(export / "model.onnx"), load_external_data=False)
    external = [t for t in _get_all_tensors(model) if uses_external_data(t)]
    for tensor in external:
        for entry in tensor.external_data:
            if entry.key == "location" and location is not None:
                entry.value = location
    if dims is not None:
        del external[0].dims[:]
        external[0].dims.extend(dims)
    return model.SerializeToString()




def test_the_pair_uploaded_through_rest_is_measured_as_onnxruntime_scores_it(
        server, export, digits, tmp_path):
    client, root, alice = server
    data_bytes = (export / "model.onnx.data").stat().st_size
    up = _post(client, alice, list(reversed(_files(export))))  # any order
    assert up.status_code == 201, up.text
    stored = [p for p in root.glob("jobs/*/uploads/*/*") if up.json()["stored_as"] in p.name]
    assert sorted(p.name.removeprefix(up.json()["stored_as"]) for p in stored) == ["", ".data"]
    r = client.post("/api/jobs", headers=alice, json={
        "kind": "benchmark", "config": {"model": up.json()["use"]["model"], "data": "digits"}})
    assert r.status_code == 201, r.text
    job = wait_job(client, r.json()["id"], alice)
    assert job["status"] == "succeeded", job
    independent = onnx_zoo.ort_accuracy(export, digits.X_test, digits.y_test)
    assert job["summary"]["accuracy"] == pytest.approx(independent, abs=1e-9)
    assert job["summary"]["size_bytes"] > data_bytes  # the weights' file is counted
    bundle = client.get(f"/api/jobs/{job['id']}/artifacts", headers=alice)
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:
        zf.extractall(tmp_path)
    shipped = onnx_zoo.ort_accuracy(tmp_path, digits.X_test, digits.y_test)
    assert shipped == pytest.approx(independent, abs=1e-9)


@pytest.mark.parametrize("case, says", [
    ("the .onnx alone", ["'model.onnx' keeps its weights in 'model.onnx.data'", "not uploaded"]),
    ("an extra file", ["'notes.txt' is not named by 'model.onnx'"]),
    ("the data file renamed", ["'model.onnx.data', which was not uploaded",
                               "'weights.bin' is not named by 'model.onnx'"]),
])
def test_a_missing_or_unnamed_data_file_is_refused_naming_them(server, export, case, says):
    client, root, _ = server
    data = (export / "model.onnx.data").read_bytes()
    parts = {"the .onnx alone": {"model.onnx.data": b""},
             "an extra file": {"notes.txt": b"extra"},
             "the data file renamed": {"model.onnx.data": b"", "weights.bin": data}}[case]
    before = _stored(root)
    r = _post(client, session(client), _files(export, **parts))
    assert r.status_code == 422, r.text
    assert all(s in r.json()["detail"] for s in says), r.json()["detail"]
    assert str(root) not in r.text and "/tmp" not in r.text
    assert _stored(root) == before


@pytest.mark.parametrize("location", ["../model.onnx.data", "/tmp/model.onnx.data",
                                      "sub/model.onnx.data", "..\\model.onnx.data",
                                      "C:model.onnx.data"])
def test_a_location_that_is_not_a_plain_name_is_refused(server, export, location):
    client, root, _ = server
    headers = session(client)
    before = _stored(root)
    r = _post(client, headers, _files(export, **{"model.onnx": _graph(export,
                                                                      location=location)}))
    assert r.status_code == 422, r.text
    assert "not a plain file name" in r.json()["detail"] and str(root) not in r.text
    assert _stored(root) == before


def test_declared_sizes_are_checked_against_the_data_file_before_anything_loads(server,
                                                                              export):
    client, root, _ = server
    headers = session(client)
    before = _stored(root)
    data = (export / "model.onnx.data").read_bytes()
    short = _post(client, headers, _files(export, **{"model.onnx.data": data[:len(data) // 2]}))
    assert short.status_code == 422 and "past the end" in short.json()["detail"], short.text
    bomb = _graph(export, dims=[1_000_000, 1_000_000])  # 4 TB declared, 18 KB given
    r = _post(client, headers, _files(export, **{"model.onnx": bomb}))
    assert r.status_code == 422 and "STUDIO_MAX_MODEL_MB" in r.json()["detail"], r.text
    assert _stored(root) == before


def test_the_files_together_count_against_the_upload_limit(tmp_path, export):
    sizes = [p.stat().st_size for p in export.iterdir()]
    limit_mb = (max(sizes) + 1024) / 2**20  # each file fits, the two together do not
    assert sum(sizes) > limit_mb * 2**20
    with rest_client(tmp_path, measure_options=FAST, upload_limit_mb=limit_mb) as client:
        r = _post(client, session(client), _files(export))
    assert r.status_code == 422 and "together over the upload limit" in r.json()["detail"]
    assert _stored(tmp_path) == []


@contextmanager
def _quota_client(root: Path, quota_bytes: int):
    """The API behind the served app's per-address upload quota (as create_app adds it)."""
    from fastapi.testclient import TestClient

    from studio.api import create_api
    from studio.quota import UploadQuota

    app = create_api(root, measure_options=FAST, upload_limit_mb=LIMIT_MB)
    app.add_middleware(UploadQuota, quota_bytes=quota_bytes)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.job_manager.shutdown()


def test_a_pair_past_the_quota_is_refused_and_nothing_is_stored(tmp_path, export):
    pair = sum(p.stat().st_size for p in export.iterdir())
    with _quota_client(tmp_path, quota_bytes=int(pair * 1.5)) as client:
        headers = session(client)
        assert _post(client, headers, _files(export)).status_code == 201
        before = _stored(tmp_path)
        r = _post(client, headers, _files(export))  # the data file's bytes count too
        assert r.status_code == 429 and "quota" in r.json()["detail"], r.text
    assert _stored(tmp_path) == before


def test_a_data_upload_is_one_file(server, export):
    client, root, _ = server
    before = _stored(root)
    r = _post(client, session(client), [("file", ("a.csv", b"x,label\n1,0\n")),
                                        ("file", ("b.csv", b"x,label\n1,0\n"))], kind="data")
    assert r.status_code == 422 and "one .csv or .npz file" in r.json()["detail"], r.text
    assert _stored(root) == before


def test_the_ui_measures_the_pair_and_refuses_the_onnx_alone(client, export, digits):
    from gradio_client import handle_file

    graph, data = handle_file(str(export / "model.onnx")), handle_file(str(export /
                                                                           "model.onnx.data"))
    with pytest.raises(Exception, match=r"'model\.onnx\.data', which was not uploaded"):
        client.predict(graph, "digits", None, "label", api_name="/use_model")
    status, table = client.predict(graph, "digits", None, "label", [data],
                                   api_name="/use_model")
    assert "Measured" in status, status
    measured = float(dict((r[0], r[1]) for r in table["data"])["accuracy"])
    independent = onnx_zoo.ort_accuracy(export, digits.X_test, digits.y_test)
    assert measured == pytest.approx(independent, abs=1e-4)  # the table shows 4 decimals


def test_weights_in_several_data_files_are_stored_as_one_beside_the_graph(server, export,
                                                                         digits, tmp_path):
    import shutil

    import onnx

    client, root, headers = server
    split = tmp_path / "split"
    split.mkdir()
    onnx.save_model(onnx.load(str(export / "model.onnx")), str(split / "model.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)  # one file per tensor, named after it
    parts = [("file", (p.name, p.read_bytes())) for p in sorted(split.iterdir())]
    assert len(parts) > 3
    up = _post(client, headers, parts)
    assert up.status_code == 201, up.text
    stored = [p for p in root.glob("jobs/*/uploads/*/*") if up.json()["stored_as"] in p.name]
    assert sorted(p.name.removeprefix(up.json()["stored_as"]) for p in stored) == ["", ".data"]
    out = tmp_path / "stored"
    out.mkdir()
    for path in stored:  # the graph as model.onnx, its data file under the name it declares
        shutil.copyfile(path, out / ("model.onnx" if path.suffix == ".onnx" else path.name))
    independent = onnx_zoo.ort_accuracy(export, digits.X_test, digits.y_test)
    assert onnx_zoo.ort_accuracy(out, digits.X_test, digits.y_test) == independent
