"""The served app bounds what one address may upload (Gradio's upload route needs no session)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from studio.quota import UploadQuota


def _app(quota: int) -> TestClient:
    app = FastAPI()

    @app.post("/gradio_api/upload")
    async def upload(request: Request) -> dict:
        return {"got": len(await request.body())}

    @app.post("/other")
    async def other(request: Request) -> dict:
        return {"got": len(await request.body())}

    app.add_middleware(UploadQuota, quota_bytes=quota)
    return TestClient(app)


def test_uploads_past_the_quota_are_refused_other_routes_are_not():
    client = _app(quota=1000)
    assert client.post("/gradio_api/upload", content=b"x" * 600).json() == {"got": 600}
    refused = client.post("/gradio_api/upload", content=b"x" * 600)
    assert refused.status_code == 429 and "quota" in refused.json()["detail"]
    assert client.post("/gradio_api/upload", content=b"x" * 300).status_code == 200
    assert client.post("/other", content=b"x" * 5000).status_code == 200


def test_the_window_forgets_old_uploads(monkeypatch):
    from types import SimpleNamespace

    import studio.quota as quota

    now = [1000.0]
    # the quota's clock only: patching time.monotonic itself stopped every other thread's
    # clock too (the shared studio server's event loop; a fresh CI machine's real clock can
    # then be behind 4601 s, leaving its timers an hour away)
    monkeypatch.setattr(quota, "time", SimpleNamespace(monotonic=lambda: now[0]))
    client = _app(quota=1000)
    assert client.post("/gradio_api/upload", content=b"x" * 900).status_code == 200
    assert client.post("/gradio_api/upload", content=b"x" * 900).status_code == 429
    now[0] += 3601
    assert client.post("/gradio_api/upload", content=b"x" * 900).status_code == 200


def test_behind_the_proxy_the_client_is_the_address_the_proxy_appended():
    from studio.quota import ProxiedClient

    app = FastAPI()

    @app.get("/who")
    async def who(request: Request) -> dict:
        return {"client": request.client.host}

    client = TestClient(ProxiedClient(app))
    spoofed = client.get("/who", headers={"X-Forwarded-For": "1.2.3.4, 10.9.8.7"})
    assert spoofed.json() == {"client": "10.9.8.7"}
    assert client.get("/who").json()["client"] == "testclient"
