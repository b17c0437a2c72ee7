"""Security round 3, against the REST API in-process (as a shared Space serves it): a model
ONNX Runtime refuses, library messages that name server paths, and the other new attacks of
this round. Each test is one hole that was open; what was already covered lives in
test_security_*.py, test_external_data_upload.py and test_bad_input_sweep.py."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.helpers.rest import FAST, rest_client, session, wait_job


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec3")
    with rest_client(root, measure_options=FAST, per_owner=4) as client:
        yield client, root


def _graph(*extra_nodes, opsets=(("", 17),), inits=()) -> onnx.ModelProto:
    """input [n, 4] -> MatMul W [4, 3] -> t; the extra nodes map t to logits [n, 3]."""
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 12, "W")
    nodes = [helper.make_node("MatMul", ["input", "W"], ["t" if extra_nodes else "logits"]),
             *extra_nodes]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             ["n", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                             ["n", 3])],
                              [weight, *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model


def _npz() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, X=rng.normal(size=(90, 4)).astype(np.float32), y=np.arange(90) % 3)
    return buf.getvalue()


def _upload(client, headers, kind: str, name: str, content: bytes):
    return client.post("/api/uploads", headers=headers, data={"kind": kind},
                       files={"file": (name, content)})


def _benchmark(client, headers, model: onnx.ModelProto) -> dict:
    up = _upload(client, headers, "model", "mine.onnx", model.SerializeToString())
    assert up.status_code == 201, up.text
    data = _upload(client, headers, "data", "mine.npz", _npz()).json()["use"]["data"]
    r = client.post("/api/jobs", headers=headers, json={
        "kind": "benchmark", "config": {"model": up.json()["use"]["model"], "data": data}})
    assert r.status_code == 201, r.text
    return wait_job(client, r.json()["id"], headers, timeout=60)


# --- messages never name a server path ------------------------------------------------------


def test_a_model_onnx_runtime_cannot_load_fails_clearly_without_server_paths(server):
    """A custom-domain op (no ORT custom-op library is ever registered) passes the ONNX checker;
    ONNX Runtime's refusal named the upload's full server path, as an 'Internal error'."""
    client, root = server
    model = _graph(helper.make_node("Steal", ["t"], ["logits"], domain="evil.custom"),
                   opsets=(("", 17), ("evil.custom", 1)))
    job = _benchmark(client, session(client), model)
    assert job["status"] == "failed"
    assert job["error"].startswith("ONNX Runtime cannot load 'model-"), job["error"]
    assert "evil.custom:Steal(-1) is not a registered function/op" in job["error"]
    assert str(root) not in job["error"] and "/tmp" not in job["error"]


def test_an_internal_error_naming_a_server_path_reaches_the_user_by_base_name(tmp_path):
    from core.jobs import JobKind, available_kinds, get_manager

    secret = tmp_path / "jobs" / "someone" / "uploads" / "model-1.onnx"

    def fail(config, out_dir, cb, resolve, mopts):
        raise RuntimeError(f"Load model from {secret} failed: bad thing")

    kinds = {**available_kinds(), "fail": JobKind("fail", "test only", lambda c, r: {}, fail)}
    get_manager(tmp_path, kinds=kinds)
    with rest_client(tmp_path) as client:
        me = session(client)
        job = client.post("/api/jobs", json={"kind": "fail"}, headers=me).json()
        job = wait_job(client, job["id"], me, timeout=60)
    assert job["error"].startswith("Internal error: RuntimeError")
    assert job["error"].endswith("Load model from model-1.onnx failed: bad thing")
    assert str(tmp_path) not in job["error"]
