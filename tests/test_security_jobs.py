"""A native crash on a user's model ends that action with a clear message; the server serves on.

ONNX Runtime segfaults when it loads the FP16 form of a ViT-style graph (MEASURED.md). Through
the UI the studio refuses it clearly, and the same browser session keeps working.
"""

from __future__ import annotations

import time

import pytest
import torch

from tests.helpers import zoo


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
    """An (untrained) ViT-style ONNX with nn.MultiheadAttention and 3x32x32 digits as .npz."""
    folder = tmp_path_factory.mktemp("vit")
    model = zoo.vit_like(num_classes=10).eval()
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(folder / "vit.onnx"),
                      dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "n"}})
    zoo.save_npz(zoo.digits_3x32(), folder / "digits3.npz")
    return folder / "vit.onnx", folder / "digits3.npz"


def test_ort_crash_on_fp16_vit_is_refused_and_the_session_goes_on(client, vit_files):
    from gradio_client import handle_file

    model, data = vit_files
    status, _table = client.predict(handle_file(str(model)), "digits", handle_file(str(data)),
                                    "label", api_name="/use_model")
    assert "Measured" in status
    choice = client.predict(api_name="/quantize_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    with pytest.raises(Exception, match="ONNX Runtime crashes"):
        client.predict(value, "ort-fp16", "minmax", 64, False, "off", False, "U8S8", 32,
                       "x86", 1, 1e-3, api_name="/quantize")
    listed, _plot, _choice = client.predict(api_name="/list_variants")
    assert len(listed["data"]) == 1  # the server answers; the failed variant left nothing


def test_a_crashing_rest_job_fails_clearly_and_the_api_serves_on(tmp_path):
    """A test-only kind that aborts its process (as a native fault would) through the REST API;
    many owners at once cannot starve a newcomer."""
    import os

    from fastapi.testclient import TestClient

    from core.isolation import Limits
    from core.jobs import JobKind, available_kinds, get_manager
    from studio.api import create_api

    def abort(config, out_dir, cb, resolve, mopts):
        os.abort()

    kinds = {**available_kinds(),
             "abort": JobKind("abort", "test only", lambda c, r: {}, abort)}
    get_manager(tmp_path, kinds=kinds, limits=Limits(memory_mb=500, wall_s=60))
    app = create_api(tmp_path, tokens_per_hour=50)
    with TestClient(app) as client:
        def session() -> dict[str, str]:
            body = client.post("/api/session").json()
            return {body["header"]: body["token"]}

        me = session()
        job = client.post("/api/jobs", json={"kind": "abort"}, headers=me).json()
        for _ in range(1800):  # bounds a hang only
            state = client.get(f"/api/jobs/{job['id']}", headers=me).json()
            if state["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert state["status"] == "failed" and "crashed with an abort" in state["error"]
        assert client.get("/api/kinds", headers=me).status_code == 200
        invented = {"X-Studio-Session": "my-own-token-123456"}
        assert client.post("/api/jobs", json={"kind": "abort"}, headers=invented).status_code \
            == 401
    app.state.job_manager.shutdown()
