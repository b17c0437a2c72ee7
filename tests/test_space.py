"""Hugging Face Space readiness: entry point, front matter, and no network beyond loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = ("127.", "::1", "localhost", "/")


def test_readme_front_matter_declares_a_gradio_space():
    text = (ROOT / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "launch.py"
    assert (ROOT / meta["app_file"]).is_file()
    assert {"title", "sdk_version", "python_version", "short_description"} <= set(meta)


def test_no_outbound_connection_other_than_loopback():
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    env.update(NO_PROXY="localhost,127.0.0.1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/helpers/no_network_probe.py")],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = json.loads(done.stdout.strip().splitlines()[-1])
    assert attempts, "the probe saw no connection at all: it did not exercise the server"
    outside = [a for a in attempts if not a.startswith(LOOPBACK)]
    assert not outside, f"outbound connections attempted: {outside}"


def test_launch_honours_space_environment(monkeypatch):
    from studio.app import launch_kwargs
    from studio.context import StudioContext

    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    kwargs = launch_kwargs(StudioContext(ROOT / "results"))
    assert kwargs["server_name"] == "0.0.0.0" and kwargs["server_port"] == 7861
    assert kwargs["ssr_mode"] is False


def test_limits_come_from_the_environment(monkeypatch, tmp_path):
    from core.errors import InvalidParameterError
    from studio.context import StudioContext

    monkeypatch.setenv("STUDIO_ROOT", str(tmp_path))
    monkeypatch.setenv("STUDIO_UPLOAD_LIMIT_MB", "50")
    monkeypatch.setenv("STUDIO_JOBS_PER_SESSION", "1")
    ctx = StudioContext.from_env()
    assert (ctx.root, ctx.upload_limit_mb, ctx.jobs_per_session) == (tmp_path.resolve(), 50.0, 1)
    monkeypatch.setenv("STUDIO_QUEUE_SIZE", "many")
    with pytest.raises(InvalidParameterError, match="STUDIO_QUEUE_SIZE"):
        StudioContext.from_env()


def test_space_requirements_match_the_package():
    """A Space installs requirements.txt; it must list exactly the package's dependencies
    (and the ONNX converter, which the Makefile installs without its dependencies)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["convert"]
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln and not ln.startswith(("#", "-"))] == deps
