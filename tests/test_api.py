"""REST API: status codes and validation, owner isolation, cancel, bundles, and job
persistence across a restart of the server process."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from tests.helpers.rest import FAST, rest_client, session, wait_job


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with rest_client(tmp_path_factory.mktemp("api_root"), measure_options=FAST,
                     per_owner=3) as client:
        yield client


@pytest.fixture(scope="module")
def alice(api):
    return session(api)


@pytest.fixture(scope="module")
def bob(api):
    return session(api)




@pytest.mark.parametrize("body, match", [
    ({"kind": "nope"}, "'kind' parameter must be one of"),
    ({"kind": "train", "config": {"epochs": 0}}, "'epochs' parameter must be an integer"),
    ({"kind": "train", "config": {"data": "/etc/passwd"}}, "built-in data sets"),
    ({"kind": "train", "config": {"colour": "red"}}, "'colour' parameter"),
    ({"kind": "train", "extra": 1}, "extra: Extra inputs are not permitted"),
    ({"config": {}}, "kind: Field required"),
    ({"kind": "quantize", "config": {"input": "job-doesnotexist"}}, "'input' parameter"),
    ({"kind": "prune", "config": {"input": "x", "config": {"sparsity": 1.5}}}, "sparsity"),
    ({"kind": "distill", "config": {"input": "x", "config": {"student": "/tmp/m"}}},
     "server paths"),
    ({"kind": "recipe", "config": {"recipe": {"steps": [{"bake": {}}]}}}, "steps\\[0\\]"),
    ({"kind": "prune", "config": {"model": "upload:x"}}, "'data' parameter.*uploaded model"),
    ({"kind": "distill", "config": {"model": "upload:x", "method": "soft-target"}},
     "'data' parameter.*uploaded model"),
])
def test_bad_requests_get_a_clear_422(api, alice, body, match):
    r = api.post("/api/jobs", json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert re.search(match, r.json()["detail"]), r.json()["detail"]


def test_owner_header_is_required_and_openapi_is_served(api, alice):
    assert api.get("/api/jobs").status_code == 401
    assert api.get("/api/jobs", headers={"X-Studio-Session": "short"}).status_code == 401
    invented = {"X-Studio-Session": "alice-token-123"}  # any string a client picks: refused
    assert api.get("/api/jobs", headers=invented).status_code == 401
    assert api.get("/api/jobs", headers=alice).status_code == 200
    assert api.post("/api/jobs", json={"kind": "train"}).status_code == 401
    schema = api.get("/api/openapi.json").json()
    for path in ("/api/session", "/api/uploads", "/api/jobs", "/api/jobs/{job_id}",
                 "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/resume",
                 "/api/jobs/{job_id}/artifacts", "/api/metrics"):
        assert path in schema["paths"]
    assert "JobRequest" in schema["components"]["schemas"]
    assert api.get("/api/docs").status_code == 200
    assert "train" in api.get("/api/kinds").json()["kinds"]


def test_train_job_lifecycle_isolation_bundle_and_metrics(api, alice, bob):
    r = api.post("/api/jobs", json={"kind": "train", "config": {"model": "mlp", "data": "wine",
                                                               "epochs": 2}}, headers=alice)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and "result_path" not in job
    done = wait_job(api, job["id"], alice)
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert 0 < done["summary"]["accuracy"] <= 1
    # Bob sees nothing of Alice's.
    assert api.get(f"/api/jobs/{job['id']}", headers=bob).status_code == 404
    assert api.post(f"/api/jobs/{job['id']}/cancel", headers=bob).status_code == 404
    assert api.get(f"/api/jobs/{job['id']}/artifacts", headers=bob).status_code == 404
    assert api.get("/api/jobs", headers=bob).json()["jobs"] == []
    assert [j["id"] for j in api.get("/api/jobs", headers=alice).json()["jobs"]] == [job["id"]]
    r = api.get(f"/api/jobs/{job['id']}/artifacts", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
    assert {"model.onnx", "report.json", "MODEL_CARD.md", "recipe.yaml"} <= names
    r = api.post(f"/api/jobs/{job['id']}/resume", headers=alice)
    assert r.status_code == 409 and "only an interrupted" in r.json()["detail"]
    metrics = api.get("/api/metrics", headers=alice).json()
    assert metrics["completed"] == 1 and metrics["failed"] == 0
    assert metrics["best_accuracy"] == pytest.approx(done["summary"]["accuracy"])
    assert metrics["mean_duration_s"] > 0
    assert api.get("/api/metrics", headers=bob).json()["completed"] == 0


def test_cancel_via_api_stops_the_job_itself_and_leaves_nothing(api, bob, monkeypatch):
    # No kill after a grace period: only the job's own check can end its 5000 epochs.
    monkeypatch.setattr("core.isolation.GRACE_S", 1e6)
    r = api.post("/api/jobs", json={"kind": "train", "config": {"epochs": 5000}},
                 headers=bob)
    job_id = r.json()["id"]
    wait_job(api, job_id, bob, states=("running",))
    time.sleep(0.3)
    assert api.get(f"/api/jobs/{job_id}/artifacts", headers=bob).status_code == 409
    r = api.post(f"/api/jobs/{job_id}/cancel", headers=bob)
    assert r.status_code == 202
    done = wait_job(api, job_id, bob, timeout=120)  # bounds a hang only
    assert done["status"] == "cancelled"
    manager = api.app.state.job_manager
    folder = manager.owner_dir(api.app.state.token_issuer.owner(bob["X-Studio-Session"]))
    assert not folder.exists() or not any(folder.iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path) -> tuple[subprocess.Popen, str]:
    """The REST server on a free port, answering; its process and URL. A port picked free can
    be taken before the server binds it (the server then exits): another port is tried."""
    import httpx

    env = {**os.environ, "NO_PROXY": "localhost,127.0.0.1"}
    for _ in range(3):
        url = f"http://127.0.0.1:{_free_port()}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "studio.api", "--root", str(root), "--port",
             url.rsplit(":", 1)[1], "--fast-measure"],
            cwd=str(Path(__file__).resolve().parents[1]), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 120  # bounds a hang only
        while proc.poll() is None and time.monotonic() < end:
            try:
                if httpx.get(f"{url}/api/kinds", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            raise AssertionError("server did not start")
    raise AssertionError("server exited at start 3 times (port taken?)")


def test_jobs_survive_a_server_restart(tmp_path):
    import httpx

    http = httpx.Client(timeout=60)  # bounds a hang (httpx's default is 5 s per request)
    proc, url = _start_server(tmp_path)
    try:
        token = http.post(f"{url}/api/session").json()
        alice = {token["header"]: token["token"]}  # still valid after a restart
        # the first submit imports torch in the server to count the model's parameters
        done = http.post(f"{url}/api/jobs", headers=alice, json={
            "kind": "train", "config": {"model": "mlp", "data": "wine", "epochs": 1}}).json()
        end = time.monotonic() + 120
        while http.get(f"{url}/api/jobs/{done['id']}", headers=alice).json()["status"] \
                != "succeeded" and time.monotonic() < end:
            time.sleep(0.2)
        long = http.post(f"{url}/api/jobs", headers=alice, json={
            "kind": "train", "config": {"epochs": 5000}}).json()
        end = time.monotonic() + 60
        while http.get(f"{url}/api/jobs/{long['id']}", headers=alice).json()["status"] \
                != "running" and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait(10)
    proc, url = _start_server(tmp_path)
    try:
        first = http.get(f"{url}/api/jobs/{done['id']}", headers=alice).json()
        assert first["status"] == "succeeded" and first["summary"]["accuracy"] > 0
        second = http.get(f"{url}/api/jobs/{long['id']}", headers=alice).json()
        assert second["status"] == "interrupted" and "restarted" in second["error"]
        r = http.get(f"{url}/api/jobs/{done['id']}/artifacts", headers=alice)
        assert r.status_code == 200 and r.content[:2] == b"PK"
        assert http.get(f"{url}/api/metrics", headers=alice).json()["interrupted"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        http.close()


def test_api_is_mounted_beside_the_ui(tmp_path):
    from fastapi.testclient import TestClient

    import studio  # noqa: F401
    from studio.api import create_app
    from studio.context import StudioContext

    app = create_app(StudioContext(tmp_path, measure_options=FAST))
    with TestClient(app) as client:
        assert client.get("/api/kinds").status_code == 200
        assert client.get("/api/jobs", headers=session(client)).json() == {"jobs": []}
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
    app.state.job_manager.shutdown()


def test_prune_and_distill_take_an_uploaded_model_with_data(api, digits, tmp_path):
    """Prune and distill refused ``data`` (so any uploaded model) while quantize, benchmark
    and auto took it: each now measures the uploaded ONNX model on the data named."""
    import torch

    from tests.helpers import onnx_zoo

    carol = session(api)  # her own jobs: the other tests count Alice's and Bob's
    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=3)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():  # a user's legacy export: torch's deprecation is not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.from_numpy(digits.X_train[:2]),), str(path),
                          dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    up = api.post("/api/uploads", headers=carol, data={"kind": "model"},
                  files={"file": ("tiny.onnx", path.read_bytes())})
    assert up.status_code == 201, up.text
    independent = onnx_zoo.ort_accuracy(tmp_path, digits.X_test, digits.y_test)
    for kind, options in (("prune", {"method": "l1-unstructured",
                                     "config": {"sparsity": 0.5, "finetune_epochs": 0}}),
                          ("distill", {"config": {"epochs": 1}})):
        r = api.post("/api/jobs", headers=carol, json={"kind": kind, "config": {
            "model": up.json()["use"]["model"], "data": "digits", **options}})
        assert r.status_code == 201, r.text
        job = wait_job(api, r.json()["id"], carol)
        assert job["status"] == "succeeded", job
        bundle = api.get(f"/api/jobs/{job['id']}/artifacts", headers=carol)
        report = json.loads(zipfile.ZipFile(io.BytesIO(bundle.content)).read("report.json"))
        assert report["data"]["source"] == "digits" and report["operation"] == kind
        assert report["baseline"]["accuracy"] == pytest.approx(independent)
