"""The REST API in-process for tests: a ``TestClient`` over ``create_api`` and a session header
the server issued."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Measurement options that keep jobs quick: a tiny latency budget, no memory probe.
FAST = {"budget_s": 0.02, "memory": False}


@contextmanager
def rest_client(root: str | Path, **options: Any) -> Iterator[Any]:
    """A ``TestClient`` over ``create_api(root, **options)``; its job manager is shut down
    after. The app is ``client.app``."""
    from fastapi.testclient import TestClient

    from studio.api import create_api

    app = create_api(root, **options)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.job_manager.shutdown()


def session(client: Any) -> dict[str, str]:
    """A session header with a token the server issued (POST /api/session)."""
    r = client.post("/api/session")
    assert r.status_code == 201, r.text
    return {r.json()["header"]: r.json()["token"]}


def wait_job(client: Any, job_id: str, headers: dict[str, str],
             states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 180) -> dict[str, Any]:
    """The job's JSON once its status is one of ``states`` (AssertionError after ``timeout``)."""
    end = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < end:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["status"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck in {job.get('status')}")


def upload(client: Any, headers: dict[str, str], kind: str, name: str, content: bytes) -> Any:
    """POST one file to /api/uploads as ``kind`` ("model" or "data")."""
    return client.post("/api/uploads", headers=headers, data={"kind": kind},
                       files={"file": (name, content)})


def tiny_npz() -> bytes:
    """An .npz of 90 rows of 4 features and 3 classes."""
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, X=rng.normal(size=(90, 4)).astype(np.float32), y=np.arange(90) % 3)
    return buf.getvalue()


def slow_npz(path: Path) -> Path:
    """20,000 rows of 1x8x8 images at ``path``: a CNN epoch on it takes ~0.5 s or more, so a
    100-epoch run outlasts a test's waits by far (digits trains an epoch in 0.05 s on CI, so
    a run there can end before the test stops it)."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, X=rng.normal(size=(20_000, 1, 8, 8)).astype(np.float32),
             y=np.arange(20_000) % 10)
    return path
