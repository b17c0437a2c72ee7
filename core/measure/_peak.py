"""This CPU's measured FP32 and INT8 GEMM peaks, run once per machine and cached.

The peak is the best of a few timed runs of one large matrix product per engine (torch and
ONNX Runtime FP32; ONNX Runtime MatMulInteger U8S8 for INT8), at 1 thread and at every core.
The cache file lives in the user cache dir, keyed by CPU model, ISA flags, cores and the
library versions, so a new CPU or library measures again. ``read_cached``/``write_cached`` keep
other once-per-machine figures the same way (e.g. ``core.isolation``'s torch import size).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["cache_dir", "cached_peaks", "measure_peaks", "peak_key", "peaks", "read_cached",
           "write_cached"]

PEAK_SCHEMA = "optimization-studio/peaks/v1"
_GEMM = (256, 512, 512)  # M, K, N: large enough to run at the peak, ~1-10 ms a call
_ROUNDS = 25


def cache_dir() -> Path:
    """``$STUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/optimization-studio`` (or ~/.cache).

    Written by hand: one path does not need platformdirs as a dependency.
    """
    if os.environ.get("STUDIO_CACHE_DIR"):
        return Path(os.environ["STUDIO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optimization-studio"


def _key_fields() -> dict[str, Any]:
    from core.measure._environment import _cpuinfo, _version

    model, isa = _cpuinfo()
    return {"cpu": model, "isa": list(isa), "cores": os.cpu_count(),
            "torch": _version("torch"), "onnxruntime": _version("onnxruntime"),
            "numpy": np.__version__}


def peak_key(fields: dict[str, Any] | None = None) -> str:
    """The cache key: a hash of CPU model, ISA, cores and library versions."""
    text = json.dumps(fields or _key_fields(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _best_rate(run: Callable[[], Any], macs: int) -> float:
    """GMAC/s of the fastest of a few calls (a peak, not a typical figure)."""
    for _ in range(3):
        run()
    best = float("inf")
    for _ in range(_ROUNDS):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return macs / best / 1e9


def _ort_gemm(int8: bool, threads: int) -> Callable[[], Any]:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = _GEMM
    rng = np.random.default_rng(0)
    if int8:
        w = rng.integers(-128, 127, (k, n), dtype=np.int8)
        a = rng.integers(0, 255, (m, k), dtype=np.uint8)
        op, a_type, c_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
    else:
        w = rng.standard_normal((k, n), dtype=np.float32)
        a = rng.standard_normal((m, k), dtype=np.float32)
        op, a_type, c_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["C"])], "gemm",
        [helper.make_tensor_value_info("A", a_type, [m, k])],
        [helper.make_tensor_value_info("C", c_type, [m, n])],
        [numpy_helper.from_array(w, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"A": a})


def _torch_fp32(threads: int) -> float:
    import torch

    from core.measure._lock import torch_threads

    m, k, n = _GEMM
    a, b = torch.randn(m, k), torch.randn(k, n)
    with torch_threads(threads), torch.inference_mode():  # locked: the count is process-wide
        return _best_rate(lambda: torch.mm(a, b), m * k * n)


def measure_peaks() -> dict[str, Any]:
    """Run the GEMM microbenchmark now: ``{"fp32": {"1": GMAC/s, "all": ...}, "int8": ...}``."""
    from core.measure._lock import measurement_lock

    cores = os.cpu_count() or 1
    out: dict[str, Any] = {"fp32": {}, "int8": {}, "engines": {}}
    with measurement_lock():  # no other timing in this process meanwhile
        for label, threads in (("1", 1), ("all", cores)):
            out["engines"][label] = _engine_peaks(threads)
    for label, engines in out["engines"].items():
        out["fp32"][label] = max(v for e, v in engines.items() if e.endswith("fp32"))
        out["int8"][label] = max(v for e, v in engines.items() if e.endswith("int8"))
    m, k, n = _GEMM
    out["gemm"] = {"m": m, "k": k, "n": n, "rounds": _ROUNDS, "statistic": "best call"}
    out["threads_all"] = cores
    return out


def _engine_peaks(threads: int) -> dict[str, float]:
    """GMAC/s of each engine's GEMM at one thread count."""
    m, k, n = _GEMM
    engines = {"ort-fp32": _best_rate(_ort_gemm(False, threads), m * k * n),
               "ort-int8": _best_rate(_ort_gemm(True, threads), m * k * n)}
    try:
        engines["torch-fp32"] = _torch_fp32(threads)
    except ImportError:  # torch is optional for an ONNX-only install
        pass
    return engines


def read_cached(kind: str, schema: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The cached ``<kind>-<key>.json`` of this machine (``key`` from ``fields``) when its
    schema and environment match, else None. Nothing is measured here."""
    path = cache_dir() / f"{kind}-{peak_key(fields)}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != schema \
            or data.get("environment") != fields:
        return None
    return data


def write_cached(kind: str, schema: str, fields: dict[str, Any],
                 measured: dict[str, Any]) -> dict[str, Any]:
    """Cache ``measured`` for this machine as ``<kind>-<key>.json`` (with its schema, key,
    environment and time) and return that record; a read-only cache dir only skips the write."""
    data = {"schema": schema, "key": peak_key(fields), "environment": fields,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **measured}
    path = cache_dir() / f"{kind}-{data['key']}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)  # atomic: two processes measuring at once both leave a whole file
    except OSError:
        pass  # a read-only home still gets the figures, measured each time
    return data


def cached_peaks() -> dict[str, Any] | None:
    """The cached peaks of this machine, or None (nothing is measured here)."""
    return read_cached("peaks", PEAK_SCHEMA, _key_fields())


def peaks(*, refresh: bool = False) -> dict[str, Any] | None:
    """This machine's peaks: from the cache, else measured now (~1-3 s) and cached.

    Returns None where the microbenchmark cannot run (no ONNX Runtime).
    """
    if not refresh:
        found = cached_peaks()
        if found is not None:
            return found
    fields = _key_fields()
    try:
        measured = measure_peaks()
    except ImportError:
        return None
    return write_cached("peaks", PEAK_SCHEMA, fields, measured)
