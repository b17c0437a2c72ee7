"""Shared fixtures: a trained tiny baseline, and one in-process studio server per session."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")
# The studio's record of its own TorchScript/.pt2 files: a throwaway one for the tests.
os.environ.setdefault("STUDIO_TRUST_STORE", tempfile.mkdtemp(prefix="studio-trust-"))
# torch INT8 programs are measured uncompiled unless a test asks (torch.compile takes 15-60 s
# per batch size here); tests/test_pt2e.py compiles once.
os.environ.setdefault("STUDIO_TORCH_COMPILE", "0")

FAST_MEASURE = {"budget_s": 0.02, "memory": False}


@pytest.fixture(scope="session")
def digits():
    from core.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def img_npz(tmp_path_factory):
    """Digits at 3x16x16 as a user .npz, and the split the studio makes of it."""
    from tests.helpers.zoo import digits_npz

    path = tmp_path_factory.mktemp("img") / "digits16.npz"
    return path, digits_npz(path, size=16)


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory, digits) -> Path:
    """A trained digits CNN run folder (3 epochs), shared read-only by tests."""
    from core.runs import train_baseline
    from core.training import TrainConfig

    out = tmp_path_factory.mktemp("baseline") / "train-base"
    train_baseline("cnn", digits, out_dir=out, config=TrainConfig(epochs=3),
                   measure_options=FAST_MEASURE)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory):
    """The whole app launched in-process; yields (url, StudioContext)."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio_tmp"))
    from studio.app import build_app, launch_kwargs
    from studio.context import StudioContext

    ctx = StudioContext(tmp_path_factory.mktemp("studio_root"), measure_options=FAST_MEASURE)
    demo = build_app(ctx)
    kw = launch_kwargs(ctx)
    for attempt in range(3):  # a port found free can be taken before gradio binds it
        port = _free_port()
        try:
            demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
                        ssr_mode=False, allowed_paths=kw["allowed_paths"],
                        max_file_size=kw["max_file_size"], css=kw["css"], theme=kw["theme"],
                        quiet=True)  # the studio's own CSS and theme, as served
            break
        except OSError:  # gradio: "Cannot find empty port in range"
            if attempt == 2:
                raise
    yield f"http://127.0.0.1:{port}/", ctx
    demo.close()


@pytest.fixture()
def client(studio_server):
    """A fresh gradio_client (= a fresh browser session) against the shared server."""
    from gradio_client import Client

    url, _ = studio_server
    return Client(url, analytics_enabled=False, verbose=False)
