"""Quantization benchmark (a goal, not a test): every method on three digits models.

For the built-in digits ``cnn``, a wide ``mlp`` (64→1024→1024→10) and the ``vit``, each
quantized artifact (loaded back from disk) is timed against the torch FP32 eager baseline
**interleaved in one measure_many call** (1 thread, p50 at batch 1 and 64), with its size
on disk and test accuracy. Writes ``benchmarks/results/quantization.json``.

Run under the shared lock: ``flock /tmp/bench.lock .venv/bin/python benchmarks/quantization.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {
    "cnn": ({}, 8),
    "mlp": ({"hidden_dims": [1024, 1024]}, 4),
    "vit": ({}, 12),
}
OPTIONS = {"torch-qat-int8": {"epochs": 1}}
TARGETS = {"cnn_int8_speedup_b64": 4.0, "cnn_int8_size_reduction": 3.8,
           "cnn_int8_max_drop_pt": 0.5, "mlp_int8_speedup_b64": 5.0,
           "int4_size_reduction": 6.0}
BUDGET_S = 0.25


def run_model(family: str, kwargs: dict[str, Any], epochs: int, data: Any,
              scratch: Path) -> dict[str, Any]:
    import torch

    from core.artifacts import export_onnx
    from core.measure import measure_many
    from core.models import model_for_data
    from core.quantization import load_artifact, make_config, quantize
    from core.registry import list_methods
    from core.training import TrainConfig, train

    torch.manual_seed(0)
    model = model_for_data(family, data.input_shape, data.num_classes, **kwargs)
    t0 = time.perf_counter()
    lr = 3e-3 if family == "vit" else 0.01
    train(model, data, TrainConfig(epochs=epochs, lr=lr))
    train_s = time.perf_counter() - t0
    models: dict[str, Any] = {"torch-fp32": model}
    files: dict[str, list[Path]] = {}
    notes: dict[str, Any] = {}
    fp32_onnx = scratch / f"{family}-fp32.onnx"
    export_onnx(model, fp32_onnx, torch.randn(1, *data.input_shape))
    models["ort-fp32"] = load_artifact(fp32_onnx)
    files["ort-fp32"] = [fp32_onnx]
    for method in list_methods("quantization"):
        out = scratch / f"{family}-{method}"
        t0 = time.perf_counter()
        try:
            res = quantize(model, data, make_config(method, OPTIONS.get(method, {})),
                           out_dir=out, measure_options={"budget_s": 0.02, "memory": False})
        except Exception as exc:  # a method that cannot handle this model: say so
            notes[method] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  {family} {method}: FAILED {exc}", flush=True)
            continue
        artifact = out / ("model.onnx" if (out / "model.onnx").is_file() else "model.pt")
        models[method] = load_artifact(artifact)
        files[method] = [artifact]
        notes[method] = {"quantize_s": round(time.perf_counter() - t0, 2),
                         "warnings": [w for w in res.report["warnings"]
                                      if "slower than the baseline" not in w],
                         "params": res.report["result"]["params"]}
        print(f"  {family} {method}: quantized in {notes[method]['quantize_s']} s", flush=True)
    measured = measure_many(models, data, files=files, threads=1, budget_s=BUDGET_S,
                            memory=False)
    base, ort32 = measured["torch-fp32"], measured["ort-fp32"]
    variants = {}
    for name, m in measured.items():
        variants[name] = {
            "accuracy": round(m.accuracy, 4),
            "accuracy_delta_pt": round(100 * (m.accuracy - base.accuracy), 2),
            "size_bytes": m.size_bytes,
            "size_reduction": round(base.size_bytes / m.size_bytes, 2),
            "p50_ms_b1": round(m.p50(1), 4), "p50_ms_b64": round(m.p50(64), 4),
            "p95_ms_b1": round(m.latency_ms["1"]["p95"], 4),
            "p95_ms_b64": round(m.latency_ms["64"]["p95"], 4),
            "speedup_b1": round(base.p50(1) / m.p50(1), 2),
            "speedup_b64": round(base.p50(64) / m.p50(64), 2),
            "speedup_b1_vs_ort_fp32": round(ort32.p50(1) / m.p50(1), 2),
            "speedup_b64_vs_ort_fp32": round(ort32.p50(64) / m.p50(64), 2),
            **notes.get(name, {}),
        }
    failed = {k: v for k, v in notes.items() if "error" in v}
    return {"model": {"family": family, **model.spec().kwargs}, "train_epochs": epochs,
            "train_s": round(train_s, 1), "variants": variants, "failed": failed}


def best_int8(variants: dict[str, Any], max_drop_pt: float | None = None) -> tuple[str, dict]:
    cands = {k: v for k, v in variants.items() if "int8" in k
             and (max_drop_pt is None or v["accuracy_delta_pt"] >= -max_drop_pt)}
    name = max(cands, key=lambda k: cands[k]["speedup_b64"])
    return name, cands[name]


def main() -> None:
    from core.data import load_dataset
    from core.measure import environment_manifest

    data = load_dataset("digits")
    start = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        for family, (kwargs, epochs) in MODELS.items():
            print(f"{family}…", flush=True)
            results[family] = run_model(family, kwargs, epochs, data, Path(tmp))
    cnn_name, cnn = best_int8(results["cnn"]["variants"], TARGETS["cnn_int8_max_drop_pt"])
    ok = {k: v for k, v in results["cnn"]["variants"].items()
          if "int8" in k and v["accuracy_delta_pt"] >= -TARGETS["cnn_int8_max_drop_pt"]}
    small = max(ok, key=lambda k: ok[k]["size_reduction"])
    mlp_name, mlp = best_int8(results["mlp"]["variants"])
    int4 = results["mlp"]["variants"].get("ort-int4", {})
    targets = {
        "cnn_best_int8": {"variant": cnn_name, "speedup_b64": cnn["speedup_b64"],
                          "size_reduction": cnn["size_reduction"],
                          "accuracy_delta_pt": cnn["accuracy_delta_pt"],
                          "met": cnn["speedup_b64"] >= TARGETS["cnn_int8_speedup_b64"]
                          and cnn["size_reduction"] >= TARGETS["cnn_int8_size_reduction"]},
        "cnn_smallest_int8": {"variant": small, "size_reduction": ok[small]["size_reduction"],
                              "speedup_b64": ok[small]["speedup_b64"],
                              "accuracy_delta_pt": ok[small]["accuracy_delta_pt"],
                              "met": ok[small]["size_reduction"]
                              >= TARGETS["cnn_int8_size_reduction"]
                              and ok[small]["speedup_b64"] >= TARGETS["cnn_int8_speedup_b64"]},
        "mlp_best_int8": {"variant": mlp_name, "speedup_b64": mlp["speedup_b64"],
                          "met": mlp["speedup_b64"] >= TARGETS["mlp_int8_speedup_b64"]},
        "mlp_int4_size": {"size_reduction": int4.get("size_reduction"),
                          "met": (int4.get("size_reduction") or 0)
                          >= TARGETS["int4_size_reduction"]},
    }
    report = {
        "benchmark": "quantization",
        "protocol": "each artifact loaded from disk; all variants of a model timed interleaved "
                    f"in one measure_many call, 1 thread, budget {BUDGET_S} s per variant and "
                    "batch size; baseline = torch FP32 eager (size = its safetensors bytes)",
        "data": "digits (test split for accuracy; calibration from the train split)",
        "targets": TARGETS, "target_results": targets, "models": results,
        "seconds": round(time.perf_counter() - start, 1),
        "environment": environment_manifest(threads=1),
    }
    out = ROOT / "benchmarks" / "results" / "quantization.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for family, r in results.items():
        print(f"\n{family} (train {r['train_s']} s)")
        print(f"{'variant':20s} {'acc':>7s} {'Δpt':>6s} {'size×':>6s} {'b1×':>6s} {'b64×':>6s} "
              f"{'b64× vs ORT FP32':>16s}")
        for name, v in r["variants"].items():
            print(f"{name:20s} {v['accuracy']:7.4f} {v['accuracy_delta_pt']:6.2f} "
                  f"{v['size_reduction']:6.2f} {v['speedup_b1']:6.2f} {v['speedup_b64']:6.2f} "
                  f"{v['speedup_b64_vs_ort_fp32']:16.2f}")
    print(json.dumps(targets, indent=2))
    print(f"wrote {out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
