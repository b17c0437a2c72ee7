"""Helpers shared by the benchmark scripts: where results go, and the environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the environment manifest added."""
    from core.measure import environment_manifest

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "environment": environment_manifest(threads=1), **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
