"""A parent run's figures, reused instead of measured again, only where its report proves the
same measurement: the same files (sha256), the same test rows, scored output, machine,
libraries, thread count and batch sizes. Latency is never reused: ratios come from variants
timed side by side in one run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# Figures that depend only on the model file, the test rows and the machine (not on the
# moment): what a parent's report may give instead of a new measurement.
REUSABLE = ("accuracy", "f1_macro", "params", "nonzero_params", "macs", "peak_memory_mb")


def measured_under(X: np.ndarray, y: np.ndarray, *, batch_sizes: Sequence[int],
                   threads: int) -> dict[str, Any]:
    """What a measurement depends on besides the model file (and the scored output, added
    per variant); recorded with its figures."""
    from core.measure._environment import environment_manifest

    rows = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    rows.update(np.ascontiguousarray(y).tobytes())
    env = environment_manifest()
    return {"test_rows_sha256": rows.hexdigest(), "batch_sizes": sorted(int(b) for b in
                                                                        batch_sizes),
            "threads": threads,
            **{k: env.get(k) for k in ("cpu", "isa", "cores", "python", "torch",
                                       "onnxruntime", "onnx")}}


def parent_figures(files: Sequence[Path], under: dict[str, Any]) -> dict[str, Any] | None:
    """The figures a parent run folder's report holds for exactly these files, measured
    under ``under``; ``{"figures": {...}, "run": name}`` or None where anything differs."""
    if not files:
        return None
    folder = Path(files[0]).resolve().parent
    if any(Path(f).resolve().parent != folder for f in files):
        return None
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    result = report.get("result") if isinstance(report, dict) else None
    if not isinstance(result, dict) or (result.get("extra") or {}).get("measured_under") \
            != under:
        return None
    digests = {a.get("path"): a.get("sha256") for a in report.get("artifacts") or []}
    for f in files:
        if digests.get(Path(f).name) != hashlib.sha256(Path(f).read_bytes()).hexdigest():
            return None
    if result.get("size_bytes") != sum(Path(f).stat().st_size for f in files):
        return None  # the parent's size counted another set of files
    figures = {k: result[k] for k in REUSABLE if result.get(k) is not None}
    if set(figures) != set(REUSABLE):
        return None
    return {"figures": figures, "run": folder.name}
