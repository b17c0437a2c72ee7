"""REST API security: only server-issued session tokens, rate-limited issuing, and uploads
(model and data) under the UI's rules, size-limited while streaming, refused ones deleted."""

from __future__ import annotations

import functools
import io
import pickle
import zipfile

import pytest

from tests.helpers.rest import FAST, rest_client, session, tiny_npz, upload, wait_job

LIMIT_MB = 0.05  # ~51 KB: the tiny model and data fit, the over-limit bodies do not


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_sec")
    with rest_client(root, measure_options=FAST, upload_limit_mb=LIMIT_MB,
                     tokens_per_hour=20) as client:
        yield client, root


@functools.cache
def carol(client) -> dict[str, str]:
    """One session for the many refused uploads."""
    return session(client)


def _tiny_onnx() -> bytes:
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    buf = io.BytesIO()
    torch.onnx.export(net.eval(), (torch.randn(1, 4),), buf, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def _uploads_left(root) -> list[str]:
    return sorted(p.name for p in root.glob("jobs/*/uploads/*/*"))




def test_only_tokens_the_server_issued_are_accepted(server, tmp_path):
    from studio.api import TokenIssuer, server_secret

    client, _ = server
    mine = session(client)
    assert client.get("/api/jobs", headers=mine).status_code == 200
    token = mine["X-Studio-Session"]
    nonce, sig = token.split(".")
    forged = [
        "alice-token-123",  # what clients used to pick
        f"{nonce}.{'0' * 32}",  # a real nonce with a made-up signature
        f"{'a' * 32}.{sig}",  # a real signature on another nonce
        TokenIssuer(server_secret(tmp_path)).issue("x"),  # signed by another server's secret
    ]
    for bad in forged:
        r = client.get("/api/jobs", headers={"X-Studio-Session": bad})
        assert r.status_code == 401 and "POST /api/session" in r.json()["detail"]
    assert client.post("/api/uploads", headers={"X-Studio-Session": forged[0]},
                       data={"kind": "data"}, files={"file": ("d.npz", b"x")}).status_code == 401


def test_issuing_tokens_is_rate_limited_per_address():
    from core.errors import StudioError
    from studio.api import TokenIssuer

    issuer = TokenIssuer(b"k" * 64, per_hour=3, max_clients=2)
    tokens = {issuer.issue("10.0.0.1") for _ in range(3)}
    assert len(tokens) == 3 and all(issuer.owner(t) for t in tokens)
    with pytest.raises(StudioError, match="3 session tokens in the last hour"):
        issuer.issue("10.0.0.1")
    issuer.issue("10.0.0.2")  # another address is not affected
    issuer.issue("10.0.0.3")  # the table stays bounded: the oldest address is forgotten
    assert len(issuer._seen) == 2


def test_token_route_answers_429_past_the_limit(tmp_path):
    with rest_client(tmp_path, measure_options=FAST, tokens_per_hour=2) as client:
        codes = [client.post("/api/session").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_upload_own_onnx_and_data_then_benchmark_it(server):
    client, root = server
    alice, bob = session(client), session(client)
    model = upload(client, alice, "model", "my model.onnx", _tiny_onnx())
    assert model.status_code == 201, model.text
    data = upload(client, alice, "data", "mine.npz", tiny_npz())
    assert data.status_code == 201, data.text
    assert model.json()["filename"] == "my_model.onnx"
    ref_model, ref_data = model.json()["use"]["model"], data.json()["use"]["data"]
    r = client.post("/api/jobs", headers=alice, json={
        "kind": "benchmark", "config": {"model": ref_model, "data": ref_data}})
    assert r.status_code == 201, r.text
    job = wait_job(client, r.json()["id"], alice)
    assert job["status"] == "succeeded", job
    assert job["summary"]["size_bytes"] == len(_tiny_onnx()) and 0 <= job["summary"]["accuracy"]
    bundle = client.get(f"/api/jobs/{job['id']}/artifacts", headers=alice)
    assert bundle.status_code == 200
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:  # no server path leaves
        leaks = [n for n in zf.namelist() if str(root).encode() in zf.read(n)]
    assert leaks == []
    r = client.post("/api/jobs", headers=alice, json={"kind": "quantize", "config": {
        "model": ref_model, "data": ref_data, "method": "ort-dynamic-int8"}})
    assert r.status_code == 201, r.text
    job = wait_job(client, r.json()["id"], alice)
    assert job["status"] == "succeeded" and job["summary"]["method"] == "ort-dynamic-int8", job
    # Bob cannot use Alice's upload; an upload is not a job 'input'.
    r = client.post("/api/jobs", headers=bob, json={
        "kind": "benchmark", "config": {"model": ref_model, "data": "wine"}})
    assert r.status_code == 422 and "'model' parameter" in r.json()["detail"]
    r = client.post("/api/jobs", headers=alice, json={
        "kind": "quantize", "config": {"input": model.json()["id"]}})
    assert r.status_code == 422 and "'input' parameter" in r.json()["detail"]


@pytest.mark.parametrize("kind, name, content, status, says", [
    ("model", "model.onnx", pickle.dumps({"weights": [1, 2, 3]}), 422, "pickle"),
    ("data", "data.csv", b"\x00\x01binary", 422, "neither a CSV"),
    ("data", "big.csv", b"a,label\n" + b"1,0\n" * 20_000, 422, "over the upload limit"),
    ("model", "huge.onnx", b"\x08" * 200_000, 413, "Too Large"),  # refused before it is read
    ("weights", "m.onnx", b"x", 422, "'kind' parameter"),
])
def test_refused_uploads_leave_nothing_and_no_server_path(server, kind, name, content, status,
                                                          says):
    client, root = server
    headers = carol(client)
    before = _uploads_left(root)
    r = upload(client, headers, kind, name, content)
    assert r.status_code == status, r.text
    assert says in r.text and str(root) not in r.text
    assert _uploads_left(root) == before
    assert not list(root.glob("jobs/*/uploads/*/.incoming"))


def test_a_streamed_upload_without_a_length_is_cut_off_at_the_limit(server):
    client, root = server
    boundary = "studio-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nmodel\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.onnx\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()

    def body():  # chunked: no Content-Length for the server to refuse up front
        yield head
        for _ in range(100):  # 100 × 8 KB = 800 KB, far past the ~51 KB limit
            yield b"\x08" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    before = _uploads_left(root)
    r = client.post("/api/uploads", headers={**carol(client),
                    "Content-Type": f"multipart/form-data; boundary={boundary}"},
                    content=body())
    assert r.status_code == 413, r.text
    assert _uploads_left(root) == before
