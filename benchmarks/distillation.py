"""Distillation benchmark (a goal, not a test): digits cnn teacher, 10 % labels, 3 seeds.

For each seed: train the default digits ``cnn`` teacher on all labels; distil it with
``soft-target`` into a student with ≤ 25 % of its parameters, using 10 % of the labels and the
rest of the training inputs unlabelled; the same student is trained on the 10 % labels alone
for as many optimiser steps (the fair budget; the same-epochs budget is shown too, seed 0).
Also run once (seed 0) with all labels (where digits is easy and soft targets may not help)
and, for seed 0, every other method at 10 % labels. Every figure is measured here; latency
ratios come from the run's report (teacher and student timed interleaved in one process).

Run: ``flock /tmp/bench.lock .venv/bin/python benchmarks/distillation.py``
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.distillation import DistillConfig, distill
from core.measure import environment_manifest
from core.runs import train_baseline
from core.training import TrainConfig

SEEDS = (0, 1, 2)
WIDTH = 0.4
TEACHER_EPOCHS = 20
EPOCHS = 20
OUT = Path(__file__).parent / "results" / "distillation.json"
MEASURE = {"threads": 1, "budget_s": 0.4, "memory": False}


def _row(report: dict) -> dict:
    kd = report["distillation"]
    return {
        "teacher_accuracy": report["baseline"]["accuracy"],
        "kd_accuracy": report["result"]["accuracy"],
        "label_only_accuracy": kd["label_only"]["accuracy"],
        "gain_pt": kd["gain_pt"],
        "kd_minus_teacher_pt": (report["result"]["accuracy"] - report["baseline"]["accuracy"])
        * 100,
        "kd_steps": kd["kd_student"]["steps"],
        "label_only_steps": kd["label_only"]["steps"],
        "teacher_params": report["baseline"]["params"],
        "student_params": report["result"]["params"],
        "param_ratio": report["result"]["params"] / report["baseline"]["params"],
        "speedup_b1": report["ratios"]["speedup_b1"],
        "speedup_b64": report["ratios"]["speedup_b64"],
        "transfer_set": kd["transfer_set"],
        "seconds_kd": kd["train_seconds"]["kd"],
        "seconds_label_only": kd["train_seconds"]["label_only"],
    }


def _stats(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k != "seed"]
    out = {}
    for k in keys:
        vals = [r[k] for r in rows]
        out[k] = {"mean": statistics.fmean(vals),
                  "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def main(seeds: tuple[int, ...] = SEEDS, methods: bool = True) -> dict:
    start = time.perf_counter()
    runs: dict[str, list[dict]] = {"labels_10pct": [], "labels_100pct": [],
                                   "labels_10pct_same_epochs": []}
    other: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed in seeds:
            teacher = tmp / f"teacher-{seed}"
            train_baseline("cnn", "digits", out_dir=teacher,
                           config=TrainConfig(epochs=TEACHER_EPOCHS, seed=seed),
                           measure_options={"memory": False, "budget_s": 0.05})
            plans = [("labels_10pct", 0.1, "steps")]
            if seed == seeds[0]:
                plans += [("labels_100pct", 1.0, "steps"),
                          ("labels_10pct_same_epochs", 0.1, "epochs")]
            for key, frac, budget in plans:
                cfg = DistillConfig(method="soft-target", temperature=4.0, alpha=0.7,
                                    width=WIDTH, epochs=EPOCHS, label_fraction=frac, seed=seed,
                                    budget=budget)
                res = distill(teacher, None, cfg, out_dir=tmp / f"{key}-{seed}",
                              measure_options=MEASURE)
                runs[key].append({"seed": seed, **_row(res.report)})
                print(key, seed, {k: round(v, 4) for k, v in runs[key][-1].items()
                                  if isinstance(v, float)}, flush=True)
            if methods and seed == seeds[0]:
                for m in ("feature", "attention", "relational", "self", "multi-teacher"):
                    extra = (str(teacher),) if m == "multi-teacher" else ()
                    cfg = DistillConfig(method=m, width=WIDTH, epochs=EPOCHS,
                                        label_fraction=0.1, seed=seed, teachers=extra)
                    res = distill(teacher, None, cfg, out_dir=tmp / f"{m}-{seed}",
                                  measure_options={**MEASURE, "budget_s": 0.1})
                    other[m] = {"seed": seed, **_row(res.report),
                                "method": res.report["distillation"]["method"]}
                    print(m, {k: round(v, 4) for k, v in other[m].items()
                              if isinstance(v, float)}, flush=True)
    summary = {key: _stats(rows) for key, rows in runs.items() if rows}
    s10 = summary["labels_10pct"]
    targets = {
        "student_params_le_25pct": s10["param_ratio"]["mean"] <= 0.25,
        "kd_within_1.5pt_of_teacher": s10["kd_minus_teacher_pt"]["mean"] >= -1.5,
        "gain_ge_2pt": s10["gain_pt"]["mean"] >= 2.0,
        "student_2x_faster_b64": s10["speedup_b64"]["mean"] >= 2.0,
    }
    result = {
        "benchmark": "distillation",
        "setup": {"data": "digits", "teacher": "cnn channels [16, 32] (default)",
                  "teacher_epochs": TEACHER_EPOCHS, "student_width": WIDTH,
                  "method": "soft-target", "temperature": 4.0, "alpha": 0.7,
                  "epochs_kd_student": EPOCHS, "seeds": list(seeds),
                  "label_only_budget": "same optimiser steps as the KD student (default); "
                  "labels_10pct_same_epochs shows the same-epochs budget",
                  "measure": MEASURE},
        "summary": summary,
        "targets_met": targets,
        "runs": runs,
        "other_methods_10pct_seed0": other,
        "environment": environment_manifest(threads=1),
        "seconds": time.perf_counter() - start,
    }
    return result


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = main(seeds=(0,) if quick else SEEDS, methods=not quick)
    if not quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(res, indent=2))
    print(json.dumps({"summary": res["summary"], "targets_met": res["targets_met"],
                      "seconds": res["seconds"]}, indent=1))
