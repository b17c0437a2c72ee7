"""The device agent: one file (onnxruntime + numpy), the studio's protocol, and a round trip
with an agent process on loopback against a test studio API."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from core.serving import agent

AGENT_FILE = Path(agent.__file__)


def test_agent_constants_match_the_studio_protocol():
    from core.serving import protocol

    assert agent.PROTOCOL == protocol()
    from core.measure._environment import ISA_FLAGS

    assert set(ISA_FLAGS) <= set(agent._ISA)  # the agent reports every flag the studio does


def test_agent_file_needs_only_onnxruntime_numpy_and_the_standard_library():
    tree = ast.parse(AGENT_FILE.read_text())
    roots = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in (n.names if isinstance(n, ast.Import) else [n])}
    third_party = roots - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "onnxruntime"}


def _call(url, method="GET", body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Studio-Session", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture()
def studio_api(tmp_path):
    from core.serving import EndpointServer
    from studio.api import create_api

    app = create_api(tmp_path / "root", measure_options={"budget_s": 0.02, "memory": False})
    with EndpointServer(app) as server:
        yield server.url, app, tmp_path / "root"


def test_agent_round_trip_on_loopback(studio_api, baseline_dir, tmp_path):
    url, app, root = studio_api
    token = _call(url + "/api/session", "POST")[1]["token"]
    other = _call(url + "/api/session", "POST")[1]["token"]
    # Two variants of this token's owner: a succeeded job's run folder, and its ONNX copy.
    manager, owner = app.state.job_manager, app.state.token_issuer.owner(token)
    runs = []
    for name in ("train-a", "train-b"):
        run = root / "runs" / name
        shutil.copytree(baseline_dir, run)
        job = manager.store.create("train", owner, {})
        manager.store.finish(job.id, "succeeded", result_path=str(run))
        runs.append(name)
    status, listing = _call(url + "/api/devices/variants", token=token)
    assert status == 200 and [v["id"] for v in listing["variants"]] == runs
    assert _call(url + "/api/devices/variants", token=other)[1]["variants"] == []
    assert _call(url + "/api/devices/variants")[0] == 401
    bad = _call(url + "/api/devices/variants/train-a/files/report.json", token=token)
    assert bad[0] == 404 and "not an ONNX file" in bad[1]["detail"]

    proc = subprocess.run(
        [sys.executable, str(AGENT_FILE), "--server", url, "--token", token,
         "--workdir", str(tmp_path / "agent"), "--name", "test-device"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "", "NO_PROXY": "127.0.0.1"})  # no PYTHONPATH: the file stands alone
    assert proc.returncode == 0, proc.stderr
    status, devices = _call(url + "/api/devices", token=token)
    (device,) = devices["devices"]
    assert device["manifest"]["name"] == "test-device"
    assert device["manifest"]["onnxruntime"] and device["manifest"]["threads"] == 1
    assert set(device["figures"]) == set(runs)
    for figs in device["figures"].values():
        assert set(figs["latency_ms"]) == {"1", "64"}
        assert 0 < figs["latency_ms"]["1"]["p50"] <= figs["latency_ms"]["1"]["p95"]
    assert _call(url + "/api/devices", token=other)[1]["devices"] == []
    refused = _call(url + f"/api/devices/{device['device_id']}/figures", "POST",
                    {"run_id": "train-a", "latency_ms": {"1": {"p50": -1, "p95": 1}}},
                    token=token)
    assert refused[0] == 422 and "latency_ms" in refused[1]["detail"]
    unknown = _call(url + f"/api/devices/{device['device_id']}/figures", "POST",
                    {"run_id": "nope", "latency_ms": {"1": {"p50": 1, "p95": 1}}}, token=token)
    assert unknown[0] == 404

    # studio compare --device (core.compare's device=) ranks the variants by this device's
    # latency, with its manifest.
    from core.cli import run

    (tmp_path / "device.json").write_text(json.dumps(device))
    assert run(["compare", *(str(root / "runs" / r) for r in runs), "--device",
                str(tmp_path / "device.json"), "--budget", "0.02", "--no-memory",
                "--out", str(tmp_path / "cmp")]) == 0
    section = json.loads((tmp_path / "cmp" / "report.json").read_text())["device"]
    by_b1 = sorted(runs, key=lambda r: device["figures"][r]["latency_ms"]["1"]["p50"])
    assert section["ranking"] == by_b1 and section["missing"] == []
    assert section["manifest"]["name"] == "test-device"
    from core.serving import ranking_markdown

    assert "test-device" in ranking_markdown(section) and "| 1 | " in ranking_markdown(section)
