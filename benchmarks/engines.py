"""Engines benchmark (a goal, not a test): which engine is fastest per batch size and threads,
how close each comes to this CPU's measured peak, and what Auto's ranking picks.

ResNet-18-, MobileNetV3- and ViT-style models (tests/helpers/zoo.py) trained briefly on digits
upscaled to 3x32x32; per model: torch eager FP32, ONNX Runtime FP32, ONNX Runtime static INT8
(U8S8 QDQ) and torch static INT8 (the quantization area's torch-static-int8: torchao PT2E,
``model.pt2`` loaded back and compiled by ``torch.compile``/inductor with freezing at every
target batch size and thread count *before* timing, so only warm compiled calls are timed;
compile seconds in ``notes``), all made through the studio's verbs, loaded back from disk and
timed **interleaved in one measure_many call** at batch 1 and 64, at 1 thread and at all cores.
A second copy of the ORT FP32 session is timed beside them (A/A): the larger of its deviation
from 1.0 and the recorded noise band is this run's noise band for "fastest within noise".
Each figure comes with the achieved useful GMAC/s (zero-padding taps excluded) and its share of
the measured FP32/INT8 GEMM peak. Auto's pick (core.auto.choose on the measured table, within
a 1-point accuracy tolerance) is listed beside the fastest measured variant per target, and
beside the fastest within that tolerance. The load average is recorded before and after each
model. Writes ``benchmarks/results/<--out>.json`` (default ``engines``; one file per CPU).

Run under the shared lock: ``flock /tmp/bench.lock .venv/bin/python benchmarks/engines.py``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("resnet18", "mobilenetv3", "vit")
AA = "ort-fp32 (A/A copy)"  # the same file timed twice: how far identical variants differ
TOLERANCE = 0.01
TARGET = {"batch_sizes": (1, 64), "threads": (1, "all")}
TORCH_INT8 = ("torchao PT2E model.pt2 compiled (inductor, freezing) at every target batch size "
              "and thread count before timing; compile seconds in notes, not in latency")


def _model(name: str) -> Any:
    import torch

    from tests.helpers import zoo

    torch.manual_seed(0)  # the initial weights: a 1-epoch model's accuracy depends on them
    return {"resnet18": zoo.resnet_like, "mobilenetv3": zoo.mobilenet_v3_like,
            "vit": zoo.vit_like}[name](10)


def _variants(name: str, data: Any, epochs: int, scratch: Path) -> tuple[dict, dict, dict]:
    """(models to time, their files, notes) for one architecture."""
    import torch

    from core.artifacts import export_onnx
    from tests.helpers import zoo

    model = _model(name)
    t0 = time.perf_counter()
    zoo.fit(model, data, epochs=epochs)
    model.eval()
    notes: dict[str, Any] = {"train_s": time.perf_counter() - t0}
    onnx_path = scratch / name / "fp32.onnx"
    onnx_path.parent.mkdir(parents=True)
    export_onnx(model, onnx_path, torch.from_numpy(data.X_test[:1]))
    models: dict[str, Any] = {"torch-eager-fp32": model, "ort-fp32": onnx_path,
                              AA: onnx_path}
    files: dict[str, list[Path]] = {"ort-fp32": [onnx_path], AA: [onnx_path]}
    for method, label in (("ort-static-int8", "ort-static-int8"),
                          ("torch-static-int8", "torch-int8")):
        try:
            models[label], files[label] = _make(model, data, method, scratch / name / method,
                                                notes, label)
        except Exception as exc:  # an engine that fails on this model is reported, not fatal
            notes[f"{label}_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return models, files, notes


def _make(model: Any, data: Any, method: str, out: Path, notes: dict[str, Any],
          label: str) -> tuple[Any, list[Path]]:
    """The quantized artifact, loaded from disk the way it is run (torch INT8: compiled at
    every target batch size and thread count, each compile timed apart from latency)."""
    from core.measure import Target
    from core.quantization import load_artifact, make_config, quantize

    quick = {"memory": False, "budget_s": 0.02, "batch_sizes": (1,), "threads": 1}
    options = {"compile": False} if method.startswith("torch-") else {}  # compiled below
    t0 = time.perf_counter()
    quantize(model, data, make_config(method, options), out_dir=out, measure_options=quick)
    notes[f"{label}_make_s"] = round(time.perf_counter() - t0, 2)
    artifact = out / ("model.onnx" if (out / "model.onnx").is_file() else "model.pt2")
    notes[f"{label}_artifact"] = [artifact.name]
    if artifact.suffix == ".onnx":
        return load_artifact(artifact), [artifact]
    target = Target(**TARGET)
    compiled = load_artifact(artifact, compile_for=target.batch_sizes,
                             input_shape=tuple(data.input_shape),
                             compile_threads=target.thread_counts)
    notes[f"{label}_compile_s"] = compiled.compile_s
    notes[f"{label}_compile_error"] = compiled.compile_error
    notes[f"{label}_compiled"] = compiled  # replaced by uncompiled_calls after timing
    return compiled, [artifact]


def _rows_at(measured: dict[str, Any], threads: int, first: int) -> list[dict[str, Any]]:
    """Auto's ranking rows at one thread count (from the measurement or latency_by_threads)."""
    base = measured["torch-eager-fp32"]
    rows = []
    for name, m in measured.items():
        lat = m.latency_ms if threads == first else \
            (m.extra.get("latency_by_threads") or {}).get(str(threads), {})
        eff = (m.extra.get("efficiency") if threads == first else
               (m.extra.get("efficiency_by_threads") or {}).get(str(threads))) or {}
        row = {"name": name, "ok": True, "size_bytes": m.size_bytes, "accuracy": m.accuracy,
               "val_accuracy": m.accuracy, "val_drop": base.accuracy - m.accuracy,
               "precision": eff.get("precision"), "peak_gmacs": eff.get("peak_gmacs")}
        for bs, fig in lat.items():
            row[f"p50_b{bs}"] = fig["p50"]
            row[f"p95_b{bs}"] = fig["p95"]
            row[f"min_b{bs}"] = fig.get("min")  # fastest call: unpreempted (loaded machine)
            by = (eff.get("by_batch") or {}).get(bs) or {}
            row[f"gmacs_b{bs}"] = by.get("gmacs_per_s")
            row[f"peak_share_b{bs}"] = by.get("share_of_peak")
        rows.append(row)
    return rows


def _noise(copy: Any, original: Any, threads: int, first: int) -> float:
    """This run's noise band: the A/A pair's largest p50 deviation from 1.0 over the batch
    sizes, or the recorded band (benchmarks/measure.py) where that is wider."""
    from core.measure import noise_band

    def lat(m: Any) -> dict[str, Any]:
        return m.latency_ms if threads == first else \
            (m.extra.get("latency_by_threads") or {}).get(str(threads), {})

    a, b = lat(copy), lat(original)
    devs = [abs(a[bs]["p50"] / b[bs]["p50"] - 1.0) for bs in a if bs in b]
    return round(max([noise_band(), *devs]), 4)


def _picks(rows: list[dict[str, Any]], noise: float) -> dict[str, Any]:
    from core.auto import choose

    out = {}
    for bs in (1, 64):
        timed = [r for r in rows if r.get(f"p50_b{bs}")]
        fastest = min(timed, key=lambda r: r[f"p50_b{bs}"])
        eligible = [r for r in timed if r["val_drop"] <= TOLERANCE + 1e-12]
        best = min(eligible, key=lambda r: r[f"p50_b{bs}"]) if eligible else fastest
        pick = choose(rows, "speed", TOLERANCE, batch_size=bs)
        ratio = pick[f"p50_b{bs}"] / fastest[f"p50_b{bs}"]
        ratio_ok = pick[f"p50_b{bs}"] / best[f"p50_b{bs}"]
        out[str(bs)] = {"auto_pick": pick["name"], "fastest": fastest["name"],
                        "pick_p50_ms": pick[f"p50_b{bs}"],
                        "fastest_p50_ms": fastest[f"p50_b{bs}"],
                        "pick_vs_fastest": ratio,
                        "noise_band": noise,
                        "pick_is_fastest_within_noise": ratio <= 1 + noise,
                        "fastest_within_tolerance": fastest["val_drop"] <= TOLERANCE + 1e-12,
                        "fastest_in_tolerance": best["name"],
                        "fastest_in_tolerance_p50_ms": best[f"p50_b{bs}"],
                        "pick_vs_fastest_in_tolerance": ratio_ok,
                        "pick_is_fastest_in_tolerance_within_noise": ratio_ok <= 1 + noise}
    return out


def run_model(name: str, data: Any, epochs: int, scratch: Path, budget_s: float
              ) -> dict[str, Any]:
    from core.measure import Target, measure_many

    models, files, notes = _variants(name, data, epochs, scratch)
    target = Target(**TARGET)
    measured = measure_many(models, data, files=files, batch_sizes=target.batch_sizes,
                            threads=target.threads, budget_s=budget_s, memory=False)
    compiled = notes.pop("torch-int8_compiled", None)
    if compiled is not None:  # 0: every timed call ran a warm compiled graph
        notes["torch-int8_uncompiled_calls"] = compiled.uncompiled_calls
    copy = measured.pop(AA)
    by_threads = {}
    for n in target.thread_counts:
        rows = _rows_at(measured, n, target.thread_counts[0])
        noise = _noise(copy, measured["ort-fp32"], n, target.thread_counts[0])
        by_threads[str(n)] = {"rows": rows, "noise_band": noise, "picks": _picks(rows, noise)}
    macs = measured["torch-eager-fp32"].macs
    return {"useful_macs_per_sample": macs, "notes": notes,
            "measurements": {k: m.to_dict() for k, m in measured.items()},
            "by_threads": by_threads}


def main() -> None:
    from benchmarks._common import write_result
    from core.measure import peaks
    from tests.helpers.zoo import digits_3x32

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs per model")
    ap.add_argument("--budget", type=float, default=0.3, help="timing seconds per variant/batch")
    ap.add_argument("--out", default="engines",
                    help="result name: benchmarks/results/<out>.json (one per CPU)")
    args = ap.parse_args()
    data = digits_3x32()
    peak = peaks()
    results: dict[str, Any] = _earlier(args)  # a --models subset replaces only those models
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            t0, load = time.perf_counter(), _load()
            results[name] = run_model(name, data, args.epochs, Path(tmp), args.budget)
            results[name]["wall_s"] = time.perf_counter() - t0
            results[name]["load_average"] = {"start": load, "end": _load()}
            _print(name, results[name])
            write_result(args.out, {  # after each model: a later failure keeps the figures
                "protocol": {"batch_sizes": [1, 64], "threads": "1 and all cores",
                             "interleaved": True, "budget_s": args.budget,
                             "epochs": args.epochs, "tolerance": TOLERANCE,
                             "noise": "per thread count: the larger of the recorded band and "
                                      "this run's ORT FP32 A/A p50 deviation",
                             "torch_int8": TORCH_INT8,
                             "data": "digits upscaled to 3x32x32"},
                "peaks_gmacs": {k: peak[k] for k in ("fp32", "int8", "engines", "threads_all")}
                if peak else None,
                "models": results, "wall_s": time.perf_counter() - started})


def _load() -> list[float] | None:
    """The 1/5/15-minute load average (the machine is shared: it explains noisy figures)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _earlier(args: Any) -> dict[str, Any]:
    """The other models' figures from an earlier run with the same protocol on this CPU."""
    import json

    from benchmarks._common import RESULTS
    from core.measure._environment import _cpuinfo

    try:
        old = json.loads((RESULTS / f"{args.out}.json").read_text())
    except (OSError, ValueError):
        return {}
    proto = old.get("protocol", {})
    same = proto.get("budget_s") == args.budget and proto.get("epochs") == args.epochs and \
        proto.get("torch_int8") == TORCH_INT8 and \
        old.get("environment", {}).get("cpu") == _cpuinfo()[0]
    return dict(old.get("models") or {}) if same else {}


def _print(name: str, res: dict[str, Any]) -> None:
    for n, block in res["by_threads"].items():
        for r in block["rows"]:
            share = ", ".join(f"b{bs} {r.get(f'p50_b{bs}') or 0:.3f} ms "
                              f"({(r.get(f'peak_share_b{bs}') or 0) * 100:.0f} % of peak)"
                              for bs in (1, 64))
            print(f"{name} t{n} {r['name']:18s} acc {r['accuracy']:.3f}  {share}")
        for bs, p in block["picks"].items():
            print(f"{name} t{n} b{bs}: auto picks {p['auto_pick']}, fastest {p['fastest']} "
                  f"({p['pick_vs_fastest']:.2f}x; noise band {block['noise_band']:.3f}), "
                  f"fastest in tolerance {p['fastest_in_tolerance']} "
                  f"({p['pick_vs_fastest_in_tolerance']:.2f}x)")
    print(f"{name} notes: {res['notes']}", flush=True)


if __name__ == "__main__":
    main()
