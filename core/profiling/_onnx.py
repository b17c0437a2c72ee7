"""Layer-wise profile of an ONNX model: ONNX Runtime's own per-node profiling."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from core.profiling._result import LayerProfile, Profile, aggregate


def _session(path: Path, threads: int, prefix: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _runs(events: list[dict[str, Any]], warmup: int) -> list[list[dict[str, Any]]]:
    """Node events grouped by the model_run they fall in (warm-up runs dropped)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
                  key=lambda e: e["ts"])
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    grouped = []
    for run in runs[warmup:]:
        lo, hi = run["ts"], run["ts"] + run["dur"]
        grouped.append([run] + [e for e in nodes if lo <= e["ts"] <= hi])
    return grouped


def profile_onnx(path: str | Path, x: np.ndarray, *, runs: int, warmup: int, threads: int,
                 tolerance: float) -> Profile:
    """Run ``warmup + runs`` times with ORT profiling on; per node and per run times (µs)."""
    with tempfile.TemporaryDirectory(prefix="studio-prof-") as tmp:
        sess = _session(Path(path), threads, str(Path(tmp) / "ort"))
        inp = sess.get_inputs()[0]
        feed = {inp.name: x.astype(np.float16 if "float16" in inp.type else np.float32)}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
    grouped = _runs(events, warmup)
    info: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, float]] = []
    totals = []
    for group in grouped:
        totals.append(group[0]["dur"] / 1e3)
        this_run: dict[str, float] = defaultdict(float)
        for e in group[1:]:
            name = e["name"][: -len("_kernel_time")]
            this_run[name] += e["dur"] / 1e3
            info[name] = e.get("args", {})
        rows.append(this_run)
    names = list(info)
    macs = _node_macs(Path(path))
    matrix = [[row.get(n, 0.0) for n in names] for row in rows]
    times, layer_sum, total, coverage, measured = aggregate(matrix, totals)
    layers = tuple(
        LayerProfile(name=name, kind=str(info[name].get("op_name", "?")),
                     time_ms=float(times[i]), share=float(times[i]) / total, params=None,
                     flops=2 * macs[name] * int(x.shape[0]) if name in macs else None,
                     output_mb=int(info[name].get("output_size", 0)) / 2**20,
                     params_mb=int(info[name].get("parameter_size", 0)) / 2**20)
        for i, name in enumerate(names))
    notes = ("Nodes are those of the graph ONNX Runtime runs (after its own fusions); FLOPs "
             "per node are the useful ones (zero-padding taps left out) of the nodes whose "
             "name is in the file's graph (Conv, MatMul, Gemm).",
             "params_mb per node is the parameter size ONNX Runtime reports (pre-packed "
             "weights are not in it).")
    return Profile(backend="onnxruntime", batch_size=int(x.shape[0]), threads=threads,
                   runs=len(grouped), layers=layers, total_ms=total, layer_sum_ms=layer_sum,
                   coverage=coverage, measured_total_ms=measured, plain_total_ms=None,
                   tolerance=tolerance, notes=notes)


def _node_macs(path: Path) -> dict[str, int]:
    """Useful MACs of one sample per node of the file's graph (empty where unknown)."""
    from core.measure._efficiency import onnx_runtime_names

    try:
        return onnx_runtime_names(path)
    except Exception:  # shapes that do not infer: no FLOPs, as before
        return {}
