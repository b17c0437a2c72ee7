"""Continual learning on 5-task split digits: replay vs none, with and without per-task
pruning / INT8 — final average accuracy, forgetting, backward transfer, and each task's
artifact size and latency (measured); the final artifacts of every setting are then timed
side by side in one interleaved run. Writes benchmarks/results/continual.json.

    .venv/bin/python benchmarks/continual.py [--epochs 5] [--seeds 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import write_result

SETTINGS = {
    "no replay": {"replay_size": 0},
    "replay 200": {"replay_size": 200},
    "replay 200 + prune 50 %": {"replay_size": 200, "prune": "structured-l2", "sparsity": 0.5},
    "replay 200 + INT8": {"replay_size": 200, "quantize": "ort-static-int8"},
    "replay 200 + prune 50 % + INT8": {"replay_size": 200, "prune": "structured-l2",
                                       "sparsity": 0.5, "quantize": "ort-static-int8"},
}
MEASURE = {"threads": 1, "memory": False}


def run_setting(name: str, options: dict, *, epochs: int, seed: int, root: Path) -> dict:
    from core.continual import ContinualConfig, continual

    config = ContinualConfig(sequence="split-digits", n_tasks=5, model="cnn", epochs=epochs,
                             seed=seed, **options)
    started = time.perf_counter()
    out = root / f"{name.replace(' ', '_').replace('%', 'pc').replace('+', '')}-s{seed}"
    result = continual(None, None, config, out_dir=out, measure_options=MEASURE)
    c = result.report["continual"]
    tasks = [{"task": r["task"], "average_accuracy": r["average_accuracy"],
              "accuracy": r["accuracy"], "size_bytes": r["size_bytes"],
              "latency_ms": r["latency_ms"], "nonzero_params": r["nonzero_params"],
              "sparsity_target": r["sparsity_target"]} for r in c["tasks"]]
    print(f"{name} (seed {seed}): average accuracy {c['average_accuracy']:.3f}, forgetting "
          f"{c['forgetting']:.3f}, BWT {c['backward_transfer']:+.3f}, final size "
          f"{tasks[-1]['size_bytes']:,} B, {time.perf_counter() - started:.0f} s")
    return {"setting": name, "seed": seed, "config": config.to_dict(),
            "average_accuracy": c["average_accuracy"], "forgetting": c["forgetting"],
            "backward_transfer": c["backward_transfer"], "accuracy_matrix":
            c["accuracy_matrix"], "tasks": tasks, "seconds": time.perf_counter() - started,
            "final_artifact": str(out / "tasks" / "task_5" / "model.onnx")}


def side_by_side(rows: list[dict]) -> dict:
    """The final artifact of every setting (seed 0) timed interleaved in one run."""
    from core.data import load_dataset
    from core.measure import measure_many

    finals = {r["setting"]: r["final_artifact"] for r in rows if r["seed"] == rows[0]["seed"]}
    measured = measure_many(finals, load_dataset("digits"),
                            files={k: [v] for k, v in finals.items()}, **MEASURE)
    return {k: {"size_bytes": m.size_bytes, "accuracy_all_digits": m.accuracy,
                "latency_ms": m.latency_ms} for k, m in measured.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per task (default 5)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-continual-") as tmp:
        rows = [run_setting(name, opts, epochs=args.epochs, seed=s, root=Path(tmp))
                for s in seeds for name, opts in SETTINGS.items()]
        finals = side_by_side(rows)
    for r in rows:
        r.pop("final_artifact")
    write_result("continual", {"sequence": "split-digits, 5 tasks of 2 classes", "model": "cnn",
                               "epochs_per_task": args.epochs, "seeds": seeds,
                               "measure": MEASURE, "settings": rows,
                               "final_artifacts_side_by_side": finals})


if __name__ == "__main__":
    main()
