"""Seconds, not minutes: what the server and an ONNX quantize import, and the caches behind it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _imported(code: str, *modules: str) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {list(modules)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, text=True,
                         capture_output=True, timeout=300).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_the_app_module_imports_no_torch():
    assert _imported("import studio.app", "torch", "gradio") == []


def test_the_served_app_loads_no_engine_or_figure_library(tmp_path):
    """launch.py's app (UI and REST API) up to serving: engines and plotly's figure classes
    load when a job or chart needs them; the garbage collector is on again afterwards."""
    code = (f"import gc, os\nos.environ['STUDIO_ROOT'] = {str(tmp_path)!r}\n"
            "import launch\nfrom studio.api import create_app\n"
            "create_app(launch.ctx, launch.demo)\nassert gc.isenabled()")
    heavy = ("torch", "onnx", "onnxruntime", "sklearn", "scipy", "matplotlib",
             "plotly.basedatatypes")
    assert _imported(code, *heavy) == []


def test_areas_the_server_lists_import_no_torch():
    """The tabs read these at start-up (families, methods, configs); torch waits for a job."""
    code = ("import core.models, core.fusion, core.lowrank, core.distillation, core.pruning\n"
            "from core.registry import list_areas, list_methods\n"
            "from core.jobs._kinds import available_kinds\n"
            "assert core.models.list_families() == ['mlp', 'cnn', 'vit']\n"
            "assert list_methods('pruning') and list_areas() and 'prune' in available_kinds()")
    assert _imported(code, "torch") == []


def test_family_names_listed_without_torch_are_the_registered_ones():
    from core.models import FAMILY_NAMES
    from core.models._families import _FAMILIES

    assert list(FAMILY_NAMES) == list(_FAMILIES)


def test_cpu_facts_are_torchs_own_and_cached(tmp_path, monkeypatch):
    """Read once from torch, then from the cache: the same answer, without asking torch."""
    from core.measure import _environment as env

    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path))
    env._torch_cpu_facts.cache_clear()
    first = env._torch_cpu_facts()
    assert first["capabilities"]["architecture"] == torch.cpu.get_capabilities()["architecture"]
    assert first["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert list(tmp_path.glob("cpu-facts-*.json"))

    def refuse() -> None:
        raise AssertionError("torch asked again")

    monkeypatch.setattr(env, "_ask_torch_capabilities", refuse)
    monkeypatch.setattr(env, "_ask_torch_capability", refuse)
    env._torch_cpu_facts.cache_clear()
    try:
        assert env._torch_cpu_facts() == first
    finally:
        env._torch_cpu_facts.cache_clear()


def test_quantizing_an_onnx_file_imports_no_torch(tmp_path):
    """ORT static INT8 of a conv net from the CLI: no torch or sympy (symbolic shape inference
    is skipped where ONNX's own inference already knows every shape; torch's CPU facts and
    the GEMM peaks come from the per-machine caches, which a first run on a machine fills)."""
    from core.measure import _environment as env
    from core.measure import peaks

    env._torch_cpu_facts()
    peaks()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(144, 3)).eval()
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(tmp_path / "m.onnx"),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((90, 1, 8, 8)).astype(np.float32),
             y=np.arange(90) % 3)
    argv = ["quantize", "--model", str(tmp_path / "m.onnx"), "--data", str(tmp_path / "d.npz"),
            "--method", "ort-static-int8", "--out", str(tmp_path / "out")]
    code = ("import runpy, sys\n"
            f"sys.argv = ['studio', *{argv!r}]\n"
            "try:\n    runpy.run_module('core.cli', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code")
    assert _imported(code, "torch", "sympy") == []
    assert (tmp_path / "out" / "report.json").is_file()
