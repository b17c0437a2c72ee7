"""The inference endpoint: same predictions as ONNX Runtime, clear refusals, metrics, bundles."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.errors import StudioError


@pytest.fixture(scope="module")
def endpoint(baseline_dir):
    from core.serving import build_endpoint

    app = build_endpoint(baseline_dir, max_batch=16, max_body_mb=0.05)
    with TestClient(app) as client:
        yield client, app


def _rows(digits, n):
    X, _ = digits.split("test")
    return X[:n].astype(np.float32)


def test_endpoint_predicts_what_onnxruntime_predicts(endpoint, baseline_dir, digits):
    from core.measure import ort_session

    client, app = endpoint
    X = _rows(digits, 5)
    sess = ort_session(baseline_dir / "model.onnx")
    runner = next(iter(app.state.runners.values()))
    want = sess.run([runner.output_name], {sess.get_inputs()[0].name: X})[0]
    got = client.post("/predict", json={"inputs": X.tolist()})
    assert got.status_code == 200, got.text
    np.testing.assert_allclose(np.asarray(got.json()["outputs"]), want, rtol=1e-5, atol=1e-5)
    assert got.json()["predictions"] == want.argmax(1).tolist()
    buf = io.BytesIO()
    np.save(buf, X)
    npy = client.post("/predict", content=buf.getvalue(),
                      headers={"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    assert npy.status_code == 200
    np.testing.assert_allclose(np.load(io.BytesIO(npy.content)), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, status, match", [
    ({"json": {"inputs": [[1.0, 2.0, 3.0]]}}, 422, r"must have shape \[batch, 1, 8, 8\]"),
    ({"json": {"rows": []}}, 422, r'"inputs"'),
    ({"json": {"inputs": [["a"]]}}, 422, "numbers"),
    ({"json": {"inputs": [[[[1.0] * 8] * 8]] * 17}}, 422, "1 to 16 rows"),
    ({"content": b"\x93NUMPY garbage", "headers": {"Content-Type": "application/x-npy"}}, 422,
     "not a readable .npy"),
    ({"content": b"x" * 60_000, "headers": {"Content-Type": "application/json"}}, 413,
     "at most 52,428"),
    ({"content": b"1", "headers": {"Content-Type": "text/csv"}}, 415, "Content-Type"),
])
def test_bad_input_gets_one_clear_error(endpoint, kwargs, status, match):
    client, _ = endpoint
    r = client.post("/predict", **kwargs)
    assert r.status_code == status
    assert re.search(match, r.json()["detail"]), r.json()


def test_object_arrays_in_npy_are_refused(endpoint):
    client, _ = endpoint
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    r = client.post("/predict", content=buf.getvalue(),
                    headers={"Content-Type": "application/x-npy"})
    assert r.status_code == 422 and "pickle" in r.json()["detail"].lower()


def _counter(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_and_probes_answer(endpoint, digits):
    client, app = endpoint
    variant = next(iter(app.state.runners))
    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/predict", json={"inputs": _rows(digits, 2).tolist()}).status_code \
            == 200
    client.post("/predict", json={"inputs": [[0.0]]})
    after = client.get("/metrics").text
    ok = _counter(after, "studio_requests_total", variant=variant, status="200")
    assert ok - _counter(before, "studio_requests_total", variant=variant, status="200") == 3
    assert _counter(after, "studio_requests_total", variant=variant, status="422") >= 1
    count = _counter(after, "studio_request_latency_seconds_count", variant=variant)
    assert count == ok
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"][variant]["shape"] == [None, 1, 8, 8]


def test_only_onnx_is_served(tmp_path, baseline_dir):
    from core.serving import resolve_variant

    pickle_file = tmp_path / "model.pt"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(StudioError, match="pickle"):
        resolve_variant(pickle_file)
    with pytest.raises(StudioError, match="run folder"):
        resolve_variant(tmp_path)
    served = resolve_variant(baseline_dir)
    assert served.onnx_path.name == "model.onnx"


def test_every_bundle_that_serves_carries_a_container_recipe(baseline_dir, tmp_path):
    from core.artifacts import make_bundle

    bundle = make_bundle(baseline_dir, tmp_path / "b.zip")
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        docker = zf.read("Dockerfile").decode()
        reqs = zf.read("requirements.txt").decode()
        serve = zf.read("serve.py").decode()
    assert {"model.onnx", "Dockerfile", "requirements.txt", "serve.py"} <= names
    assert docker.startswith("#") and "\nFROM python:" in docker and "\nCMD [" in docker
    copied = re.search(r"^COPY serve.py (.+) \./$", docker, re.M).group(1).split()
    assert set(copied) <= names and "model.onnx" in copied
    assert "onnxruntime" in reqs and "torch" not in reqs
    assert "from core" not in serve and "import torch" not in serve
    _serve_py_answers(bundle, tmp_path / "container")


def _serve_py_answers(bundle, folder):
    """The bundle's serve.py runs alone (no studio on the path) and answers /predict."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from core.serving._serve import free_port

    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for attempt in range(3):  # a port found free can be taken before serve.py binds it
        port = free_port()
        proc = subprocess.Popen([sys.executable, "serve.py", "--port", str(port)], cwd=folder,
                                env=env, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 120  # bounds a hang only
        while proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                if time.monotonic() > end:
                    proc.kill()
                    raise AssertionError("serve.py did not answer") from None
                time.sleep(0.2)
        if proc.poll() is None:
            break
        assert attempt < 2, "serve.py exited at start 3 times"
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict", method="POST",
            data=json.dumps({"inputs": [[[[0.0] * 8] * 8]]}).encode(),
            headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(answer["outputs"][0]) == 10 and len(answer["predictions"]) == 1


def test_deploy_tab_runs_an_ab_endpoint_and_links_devices(baseline_dir, tmp_path):
    import shutil
    from types import SimpleNamespace

    from studio.api import create_api
    from studio.context import StudioContext
    from studio.tabs import deploy

    ctx = StudioContext(tmp_path / "root")
    request = SimpleNamespace(session_hash="alice", client=SimpleNamespace(host="10.0.0.1"),
                              headers={"host": "studio.example:7860"})
    for name in ("train-x", "train-y"):
        shutil.copytree(baseline_dir, ctx.session_dir(request) / name)
    assert [rid for _, rid in deploy.onnx_choices(ctx, request)] == ["train-x", "train-y"]
    text = deploy.start_endpoint(ctx, request, "train-x", "train-y", 0.5, 0)
    try:
        assert "A/B test" in text and "127.0.0.1" in text
        with pytest.raises(StudioError, match="already serves"):
            deploy.start_endpoint(ctx, request, "train-x", None, 0.5, 0)
        assert "with their labels" in deploy.send_test_traffic(ctx, request, "train-x", 30)
        report = deploy.endpoint_of(ctx, request).get_json("/ab/report")
    finally:
        assert deploy.stop_endpoint(ctx, request) == "Endpoint stopped."
    per = report["variants"]
    assert sum(v["requests"] for v in per.values()) == 30
    assert sum(v["labelled_rows"] for v in per.values()) == 30
    assert "**latency**" in deploy.ab_markdown(report)
    with pytest.raises(StudioError, match="No endpoint"):
        deploy.endpoint_of(ctx, request)

    command, agent_copy = deploy.connect_device(ctx, request)
    token = re.search(r"--token (\S+)", command).group(1)
    assert "http://studio.example:7860" in command and agent_copy.endswith("agent.py")
    with TestClient(create_api(ctx.root)) as api:
        listed = api.get("/api/devices/variants", headers={"X-Studio-Session": token}).json()
    assert [v["id"] for v in listed["variants"]] == ["train-x", "train-y"]


def test_serve_model_cli_refuses_what_it_cannot_serve(tmp_path):
    from core.cli import run

    pt = tmp_path / "model.pt"
    pt.write_bytes(b"PK\x03\x04 not really")
    errors: list[str] = []
    assert run(["serve-model", str(tmp_path / "missing")], err=errors.append) == 2
    assert run(["serve-model", str(pt)], err=errors.append) == 2
    assert "run folder or .onnx" in errors[0] and str(tmp_path) not in "".join(errors)
    assert run(["serve-model", str(tmp_path), "--share-b", "1.5", "--ab-with", str(pt)],
               err=errors.append) == 2


def test_deploy_tab_is_wired_in_the_app(client):
    """Through the app: Connect a device gives a command and agent.py; no device yet; starting
    without a variant is refused with one clear message."""
    from pathlib import Path

    from gradio_client.exceptions import AppError

    command, agent_file = client.predict(api_name="/connect_device")
    assert "python agent.py --server http" in command and "--token " in command
    assert "def run_agent" in Path(agent_file).read_text()
    frame, _choice = client.predict(api_name="/list_devices")
    assert frame["data"] == []
    with pytest.raises(AppError, match="Pick a variant"):
        client.predict(None, None, 0.5, 0, api_name="/start_endpoint")


def test_an_endpoint_holds_its_port_from_the_moment_it_is_made():
    """The port an endpoint reports is already its own before it starts: no other process can
    take it in between (a port picked free, closed and bound later by uvicorn could be)."""
    import socket
    import urllib.request

    from fastapi import FastAPI

    from core.serving import EndpointServer

    app = FastAPI()
    app.get("/ping")(lambda: {"pong": True})
    server = EndpointServer(app)
    with pytest.raises(OSError):
        socket.create_server(("127.0.0.1", server.port)).close()  # already taken: by it
    with server, urllib.request.urlopen(server.url + "/ping", timeout=30) as answer:
        assert answer.read() == b'{"pong":true}'
