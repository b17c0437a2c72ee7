"""Benchmark (a goal, not a test): tuning on Optuna, measured side by side in one process.

1. TPE vs random on a digits space, same budget, 3 seeds (both reported as they came out).
2. Hyperband vs no pruner: training compute (epochs run) for the best accuracy found.
3. Multi-objective early stopping (the studio's median rule) vs none: epochs saved and the
   hypervolume of the (accuracy, measured latency) front kept.
4. Studio overhead per trial beyond the objective (training) with SQLite storage.

Run: flock /tmp/bench.lock .venv/bin/python benchmarks/tuning.py  → benchmarks/results/tuning.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "tuning.json"
MEASURE = {"budget_s": 0.05, "memory": False, "threads": 1}
SPACE = {
    "lr": {"type": "float", "low": 1.0e-4, "high": 0.3, "log": True},
    "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-1, "log": True},
    "batch_size": [16, 32, 64, 128],
    "depth": {"type": "int", "low": 1, "high": 2},
    "width": [16, 32, 64, 128],
    "optimizer": ["adam", "sgd"],
}
NAS_SPACE = {
    "depth": {"type": "int", "low": 1, "high": 3},
    "width": [8, 16, 32, 64, 128, 256, 512],
    "activation": ["relu", "tanh"],
}


def _study(tmp: Path, data: Any, name: str, **cfg: Any) -> dict[str, Any]:
    from core.tuning import TuneConfig, tune

    cfg.setdefault("model", "mlp")
    config = TuneConfig(data="digits", storage=f"sqlite:///{tmp / 'bench.db'}",
                        study_name=name, **cfg)
    start = time.perf_counter()
    study = tune(None, data, config, out_dir=tmp / name, measure_options=MEASURE).report["study"]
    study["wall_s"] = time.perf_counter() - start
    return study


def _best(study: dict[str, Any], key: str = "accuracy") -> dict[str, Any]:
    row = study["best"][0] if study["best"] else None
    return {"best_val_accuracy": row["values"][key] if row else None,
            "best_test_accuracy": row["test_accuracy"] if row else None,
            "best_trial": row["number"] if row else None,
            "epochs": study["epochs"]["spent"], "wall_s": round(study["wall_s"], 2),
            "counts": study["counts"]}


def tpe_vs_random(tmp: Path, data: Any, seeds=(0, 1, 2), n_trials: int = 30) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"tpe": [], "random": []}
    for seed in seeds:  # interleaved: TPE then random for each seed
        for sampler in ("tpe", "random"):
            s = _study(tmp, data, f"{sampler}-{seed}", space=SPACE, sampler=sampler,
                       epochs=3, n_trials=n_trials, seed=seed)
            runs[sampler].append({"seed": seed, **_best(s)})
            print(f"  {sampler} seed {seed}: best val {runs[sampler][-1]['best_val_accuracy']}",
                  flush=True)
    out: dict[str, Any] = {"n_trials": n_trials, "epochs_per_trial": 3, "runs": runs}
    for sampler, rows in runs.items():
        vals = [r["best_val_accuracy"] for r in rows]
        out[f"{sampler}_mean_best_val_accuracy"] = statistics.mean(vals)
        out[f"{sampler}_mean_best_test_accuracy"] = statistics.mean(
            r["best_test_accuracy"] for r in rows)
    out["tpe_wins"] = sum(t["best_val_accuracy"] > r["best_val_accuracy"]
                          for t, r in zip(runs["tpe"], runs["random"]))
    out["ties"] = sum(t["best_val_accuracy"] == r["best_val_accuracy"]
                      for t, r in zip(runs["tpe"], runs["random"]))
    return out


def hyperband_vs_none(tmp: Path, data: Any, seeds=(0, 1, 2), n_trials: int = 27,
                      epochs: int = 9) -> dict[str, Any]:
    """No pruner vs Hyperband with reduction factor 4 (the studio default) and 3 (Optuna's)."""
    rows = []
    for seed in seeds:
        pair = {}
        for pruner, rf in (("none", None), ("hyperband", 4), ("hyperband", 3)):
            key = pruner if rf is None else f"hyperband_rf{rf}"
            s = _study(tmp, data, f"hb-{key}-{seed}", space=SPACE, sampler="tpe",
                       pruner=pruner, epochs=epochs, n_trials=n_trials, seed=seed,
                       pruner_options={"min_resource": 1, "reduction_factor": rf or 3})
            pair[key] = _best(s)
            print(f"  {key} seed {seed}: epochs {pair[key]['epochs']}, best val "
                  f"{pair[key]['best_val_accuracy']}", flush=True)
        none = pair["none"]
        row: dict[str, Any] = {"seed": seed, **pair}
        for key in ("hyperband_rf4", "hyperband_rf3"):
            hb = pair[key]
            row[key].update(
                compute_ratio_epochs=none["epochs"] / hb["epochs"],
                compute_ratio_wall=none["wall_s"] / hb["wall_s"],
                best_val_delta_pt=100 * (hb["best_val_accuracy"] - none["best_val_accuracy"]),
                best_test_delta_pt=100 * (hb["best_test_accuracy"]
                                          - none["best_test_accuracy"]))
        rows.append(row)
    out: dict[str, Any] = {"n_trials": n_trials, "max_epochs": epochs, "sampler": "tpe",
                           "hyperband": {"min_resource": 1, "max_resource": epochs},
                           "runs": rows,
                           "target": "≥ 2× less training compute for the same best accuracy "
                                     "(±0.5 pt)"}
    for key in ("hyperband_rf4", "hyperband_rf3"):
        ratios = [r[key]["compute_ratio_epochs"] for r in rows]
        deltas = [r[key]["best_val_delta_pt"] for r in rows]
        out[key] = {"mean_compute_ratio_epochs": statistics.mean(ratios),
                    "min_compute_ratio_epochs": min(ratios),
                    "mean_best_val_delta_pt": statistics.mean(deltas),
                    "min_best_val_delta_pt": min(deltas),
                    "target_met": all(r >= 2 for r in ratios) and all(d >= -0.5 for d in deltas)}
    return out


def _hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    from optuna._hypervolume import compute_hypervolume

    if not points:
        return 0.0
    return float(compute_hypervolume(np.asarray(points, dtype=float), np.asarray(ref)))


def mo_early_stopping(tmp: Path, data: Any, seeds=(0, 1, 2), n_trials: int = 20,
                      epochs: int = 6) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        pair = {}
        for pruner in ("none", "median"):
            pair[pruner] = _study(tmp, data, f"mo-{pruner}-{seed}", target="architecture",
                                  space=NAS_SPACE, objectives=("accuracy", "latency"),
                                  sampler="nsga2", pruner=pruner, epochs=epochs,
                                  n_trials=n_trials, seed=seed, latency_budget_s=0.05,
                                  train={"lr": 0.01},
                                  pruner_options={"n_startup_trials": 3, "n_warmup_steps": 1})
        worst_lat = max(r["values"]["latency"] for s in pair.values() for r in s["trials"]
                        if r["values"])
        ref = (0.0, worst_lat * 1.1)  # minimise (-accuracy, latency)
        entry: dict[str, Any] = {"seed": seed, "reference_point": ref}
        for name, s in pair.items():
            pts = [(-r["values"]["accuracy"], r["values"]["latency"]) for r in s["pareto_front"]]
            entry[name] = {"epochs": s["epochs"]["spent"], "wall_s": round(s["wall_s"], 2),
                           "hypervolume": _hypervolume(pts, ref),
                           "pareto_size": len(pts), "counts": s["counts"],
                           "early_stopped": s["epochs"]["early_stopped_trials"]}
        entry["epochs_saved_fraction"] = 1 - entry["median"]["epochs"] / entry["none"]["epochs"]
        entry["hypervolume_kept"] = entry["median"]["hypervolume"] / entry["none"]["hypervolume"]
        print(f"  seed {seed}: epochs {entry['none']['epochs']} → {entry['median']['epochs']}, "
              f"hypervolume kept {entry['hypervolume_kept']:.3f}", flush=True)
        rows.append(entry)
    return {"n_trials": n_trials, "epochs_per_trial": epochs, "sampler": "nsga2",
            "objectives": ["accuracy", "latency (measured p50, batch 1)"],
            "rule": "stop at epoch s if val accuracy < median at s of completed trials that are "
                    "at least as fast (≤ 1.1× latency); 3 start-up trials, 1 warm-up epoch",
            "runs": rows,
            "mean_epochs_saved_fraction": statistics.mean(r["epochs_saved_fraction"]
                                                          for r in rows),
            "mean_hypervolume_kept": statistics.mean(r["hypervolume_kept"] for r in rows)}


def overhead(tmp: Path, data: Any, n_trials: int = 10) -> dict[str, Any]:
    """Wall time per trial minus time inside training (the objective), SQLite + TPE + median."""
    import core.training as training

    real_train = training.train
    spent: list[float] = []

    def timed_train(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real_train(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    training.train = timed_train
    try:
        # The digits CNN (16, 32 channels), 4 epochs: about a 1-second trial on one thread.
        s = _study(tmp, data, "overhead", model="cnn", model_kwargs={"channels": [16, 32]},
                   space={"lr": SPACE["lr"], "batch_size": [32, 64]}, sampler="tpe",
                   pruner="median", epochs=4, n_trials=n_trials, seed=0)
    finally:
        training.train = real_train
    per_trial = s["seconds"] / s["ran_this_time"]
    objective = statistics.mean(spent)
    extra = per_trial - objective
    return {"storage": "sqlite", "sampler": "tpe", "pruner": "median",
            "n_trials": s["ran_this_time"], "mean_trial_wall_s": per_trial,
            "mean_objective_s": objective, "overhead_per_trial_s": extra,
            "overhead_fraction_of_objective": extra / objective,
            "overhead_fraction_of_1s_trial": extra / 1.0,
            "target": "≤ 5 % of a 1-second trial", "target_met": extra <= 0.05,
            "note": "overhead = trial wall time minus time inside core.training.train: model "
                    "build, size, sampler, SQLite writes (WAL), heartbeat, callbacks"}


def main() -> None:
    import torch

    from core.data import load_dataset
    from core.measure import environment_manifest

    torch.set_num_threads(1)
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # one-off import, not in a trial
    data = load_dataset("digits")
    result: dict[str, Any] = {"benchmark": "tuning", "data": "digits", "model": "mlp",
                              "environment": environment_manifest(threads=1)}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name, fn in (("overhead", overhead), ("tpe_vs_random", tpe_vs_random),
                         ("hyperband_vs_none", hyperband_vs_none),
                         ("multi_objective_early_stopping", mo_early_stopping)):
            print(f"{name}…", flush=True)
            t0 = time.perf_counter()
            result[name] = fn(tmp, data)
            result[name]["seconds"] = round(time.perf_counter() - t0, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=_default))
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1,
                     default=_default)[:4000])


def _default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
