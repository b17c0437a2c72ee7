"""Pruning benchmark (a goal, not a test): digits cnn, vit and a wider mlp, measured side by side.

Targets (issue 4): structured 50 % channels -> params <= 30 %, >= 2.5x faster at batch 64
(torch), <= 0.5 pt accuracy drop after fine-tuning; unstructured 90 % global magnitude ->
download >= 4x smaller, <= 1 pt drop, latency unchanged; gradual beats one-shot at 80 %.

Fine-tuning uses each model's own defaults (what ``studio prune`` does when no fine-tune option is
given: ``core.training.finetune_defaults``), recorded per run; ``--finetune-epochs N`` gives every
model N epochs at the family's fixed rate below instead (how the table was measured before).

Run once, under the shared lock:  flock /tmp/bench.lock .venv/bin/python benchmarks/pruning.py
Writes benchmarks/results/pruning.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.data import load_dataset
from core.measure import environment_manifest
from core.models import model_for_data
from core.pruning import PruningConfig, prune
from core.training import TrainConfig, finetune_defaults, seed_everything, train

OUT = Path(__file__).parent / "results" / "pruning.json"

FAMILIES: dict[str, dict[str, Any]] = {
    "cnn": {"kwargs": {"channels": [64, 128], "hidden_dims": [128]},
            "train": {"epochs": 12, "lr": 0.005}, "finetune_lr": 0.002},
    "cnn-wide": {"family": "cnn", "kwargs": {"channels": [128, 256], "hidden_dims": [128]},
                 "train": {"epochs": 12, "lr": 0.005}, "finetune_lr": 0.002},
    "vit": {"kwargs": {"dim": 64, "depth": 2, "heads": 4, "head_dim": 16, "mlp_dim": 128},
            "train": {"epochs": 40, "lr": 0.001}, "finetune_lr": 0.001, "finetune_epochs": 30,
            "unstructured_lr": 0.002},
    "mlp": {"kwargs": {"hidden_dims": [1024, 1024]},
            "train": {"epochs": 12, "lr": 0.001}, "finetune_lr": 0.001},
}


def _summary(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    base, res, ratios = report["baseline"], report["result"], report["ratios"]
    info = report["pruning"]
    return {
        "method": report["method"], "config": report["config"],
        "params": res["params"], "nonzero_params": res["nonzero_params"],
        "params_ratio": res["params"] / base["params"],
        "nonzero_ratio": res["nonzero_params"] / base["nonzero_params"],
        "size_bytes": res["size_bytes"], "baseline_size_bytes": base["size_bytes"],
        "size_reduction": ratios["size_reduction"],
        "speedup_b1": ratios.get("speedup_b1"), "speedup_b64": ratios.get("speedup_b64"),
        "latency_ms": res["latency_ms"], "baseline_latency_ms": base["latency_ms"],
        "macs": res["macs"], "baseline_macs": base["macs"],
        "accuracy": res["accuracy"], "baseline_accuracy": base["accuracy"],
        "accuracy_before_finetune": info["accuracy_before_finetune"],
        "accuracy_delta_pt": 100 * ratios["accuracy_delta"],
        "widths_after": info.get("widths_after"), "warnings": report["warnings"],
        "finetune_options": info.get("finetune_options"),
        "history": [{k: h[k] for k in ("step", "sparsity", "val_accuracy_pruned",
                                       "val_accuracy")} for h in info["history"]],
        "seconds": round(seconds, 1),
    }


def _runs(spec: dict[str, Any], epochs: int | None, default_epochs: int
          ) -> dict[str, PruningConfig]:
    """The pruning runs of one model: with ``epochs`` None each fine-tune is the model's own
    default (lr None), else ``epochs`` at the family's fixed lr."""
    lr = None if epochs is None else spec["finetune_lr"]
    u_lr = None if epochs is None else spec.get("unstructured_lr", lr)
    ft = None if epochs is None else spec.get("finetune_epochs", epochs)  # None: per model
    per_step = max((ft if ft is not None else default_epochs) // 4, 1)
    return {
        "structured_50": PruningConfig(method="structured-l2", sparsity=0.5,
                                       finetune_epochs=ft, lr=lr),
        "unstructured_90": PruningConfig(method="global-magnitude", sparsity=0.9,
                                         finetune_epochs=ft, lr=u_lr),
        # equal fine-tuning budget: one-shot gets all the epochs after its single step
        "oneshot_80": PruningConfig(method="structured-l2", sparsity=0.8,
                                    finetune_epochs=4 * per_step, lr=lr),
        "gradual_80": PruningConfig(method="structured-l2", sparsity=0.8, schedule="gradual",
                                    steps=4, finetune_epochs=per_step, lr=lr),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="cnn,cnn-wide,vit,mlp")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="epochs for every model at the family's fixed lr (default: each "
                             "model's own fine-tune defaults)")
    parser.add_argument("--budget-s", type=float, default=0.6)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    measure = {"threads": 1, "budget_s": args.budget_s, "memory": False}
    started = time.perf_counter()
    results: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-prune-"))
    for family in args.families.split(","):
        spec = FAMILIES[family]
        seed_everything(0)
        net = model_for_data(spec.get("family", family), data.input_shape, data.num_classes,
                             **spec["kwargs"])
        t0 = time.perf_counter()
        trained = train(net, data, TrainConfig(**spec["train"]))
        row: dict[str, Any] = {"model_kwargs": net.spec().kwargs,
                               "baseline_test_accuracy": trained.metrics.accuracy,
                               "train_seconds": round(time.perf_counter() - t0, 1)}
        runs = _runs(spec, args.finetune_epochs, finetune_defaults(net).epochs)
        row["finetune"] = ("per-model defaults" if args.finetune_epochs is None
                           else f"{args.finetune_epochs} epochs at the family's fixed lr")
        if family != "cnn":  # keep the run short: one-shot vs gradual on the CNN only
            runs.pop("oneshot_80")
            runs.pop("gradual_80")
        for name, cfg in runs.items():
            t0 = time.perf_counter()
            result = prune(net, data, cfg, out_dir=work / f"{family}-{name}",
                           measure_options=measure)
            row[name] = _summary(result.report, time.perf_counter() - t0)
            print(f"{family} {name}: params x{row[name]['params_ratio']:.3f}, size "
                  f"/{row[name]['size_reduction']:.2f}, speed-up b1 "
                  f"{row[name]['speedup_b1']:.2f} b64 {row[name]['speedup_b64']:.2f}, acc "
                  f"{row[name]['baseline_accuracy']:.4f} -> {row[name]['accuracy']:.4f} "
                  f"(before fine-tune {row[name]['accuracy_before_finetune']:.4f}) "
                  f"[{row[name]['seconds']} s]", flush=True)
        results[family] = row
    checks = {}
    for family, row in results.items():
        s, u = row["structured_50"], row["unstructured_90"]
        checks[family] = {
            "structured_params_le_30pct": s["params_ratio"] <= 0.30,
            "structured_speedup_b64_ge_2.5": (s["speedup_b64"] or 0) >= 2.5,
            "structured_drop_le_0.5pt": s["accuracy_delta_pt"] >= -0.5,
            "unstructured_download_ge_4x_smaller": (u["size_reduction"] or 0) >= 4,
            "unstructured_drop_le_1pt": u["accuracy_delta_pt"] >= -1.0,
            "unstructured_latency_unchanged_0.8_1.25": all(
                0.8 <= (u[k] or 0) <= 1.25 for k in ("speedup_b1", "speedup_b64")),
        }
        if "gradual_80" in row:
            checks[family]["gradual_beats_oneshot_at_80"] = (
                row["gradual_80"]["accuracy"] > row["oneshot_80"]["accuracy"])
    payload = {
        "benchmark": "pruning", "data": "digits (test split, 360 rows: 1 row = 0.28 pt)",
        "protocol": "baseline and pruned model timed interleaved in one process, 1 thread, "
                    "torch eager; size = artifact bytes (safetensors vs safetensors for "
                    "structured, safetensors vs model.sparse.npz for unstructured)",
        "environment": environment_manifest(threads=1),
        "results": results, "targets_met": checks,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float))
    print(json.dumps(checks, indent=2))
    print(f"wrote {args.out} in {payload['seconds']} s")


if __name__ == "__main__":
    main()
