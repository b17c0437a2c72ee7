"""ONNX exporter choice: ``torch.onnx.export(dynamo=True)`` vs the legacy ``dynamo=False``.

On the built-in digits CNN and a ResNet-like (benchmarks/auto.py), each exporter's wall time,
parity (max |ORT - torch| on 64 test-like rows, batch 1 and 64 through the dynamic batch axis),
file size, and ONNX Runtime latency of its file (1 thread; the two files timed interleaved in
one measure_many call, p50/p95 at batch 1 and 64). Writes benchmarks/results/onnx_export.json.

Run under the shared lock: ``flock /tmp/bench.lock .venv/bin/python benchmarks/onnx_export.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REPEATS = 3  # exports per exporter (the first one also pays the exporter's imports)


def _export(model: Any, path: Path, *, dynamo: bool) -> float:
    import torch

    x = torch.randn(2, *model.input_shape)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"],
                              output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return time.perf_counter() - start


def _parity(model: Any, path: Path, X: np.ndarray) -> float:
    import torch

    from core.measure import ort_session

    sess = ort_session(path)
    with torch.inference_mode():
        ref = model(torch.from_numpy(X)).numpy()
    got = np.concatenate([sess.run(None, {"input": X[i:i + 1]})[0] for i in range(len(X))])
    got64 = sess.run(None, {"input": X})[0]
    return float(max(np.abs(ref - got).max(), np.abs(ref - got64).max()))


def run(name: str, model: Any, data: Any, scratch: Path) -> dict[str, Any]:
    from core.artifacts._onnx import onnx_files
    from core.measure import measure_many, ort_session

    model.eval()
    rows: dict[str, Any] = {}
    sessions: dict[str, Any] = {}
    files: dict[str, list[Path]] = {}
    for label, dynamo in (("dynamo", True), ("legacy", False)):
        times = []
        for i in range(REPEATS):
            path = scratch / f"{name}-{label}-{i}.onnx"
            times.append(round(_export(model, path, dynamo=dynamo), 3))
        X = data.X_test[:64].astype(np.float32)
        rows[label] = {"export_s": times, "parity_max_abs": _parity(model, path, X),
                       "bytes": sum(f.stat().st_size for f in onnx_files(path))}
        sessions[label], files[label] = ort_session(path), onnx_files(path)
        print(f"  {name} {label}: export {times} s, parity {rows[label]['parity_max_abs']:.2e}",
              flush=True)
    measured = measure_many(sessions, data, files=files, threads=1, budget_s=0.5, memory=False)
    for label, m in measured.items():
        rows[label]["latency_ms"] = m.latency_ms
        rows[label]["accuracy"] = m.accuracy
    return rows


def main() -> None:
    import torch

    from benchmarks.auto import ResNetLike, digits_rgb32
    from core.data import load_dataset
    from core.measure import environment_manifest
    from core.models import model_for_data
    from core.training import TrainConfig, train

    torch.manual_seed(0)
    digits = load_dataset("digits")
    cnn = model_for_data("cnn", digits.input_shape, digits.num_classes)
    train(cnn, digits, TrainConfig(epochs=2))
    rgb = digits_rgb32()
    resnet = ResNetLike()
    train(resnet, rgb, TrainConfig(epochs=1))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-export-") as tmp:
        results["cnn"] = run("cnn", cnn, digits, Path(tmp))
        results["resnet_like"] = run("resnet_like", resnet, rgb, Path(tmp))
    report = {"benchmark": "onnx_export", "results": results,
              "environment": environment_manifest(threads=1)}
    out = ROOT / "benchmarks" / "results" / "onnx_export.json"
    out.write_text(json.dumps(report, indent=2))
    for name, rows in results.items():
        for label, r in rows.items():
            lat = r["latency_ms"]
            print(f"{name:12s} {label:7s} export median {sorted(r['export_s'])[1]:.2f} s  "
                  f"parity {r['parity_max_abs']:.1e}  ORT b1 {lat['1']['p50']:.3f} ms  "
                  f"b64 {lat['64']['p50']:.3f} ms  {r['bytes']:,} B")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
