"""Benchmark (a goal, not a test): federated simulation speed and memory from 10 to 1000 clients.

mlp 9→[32, 16]→4, 35 samples per client, 20 rounds of FedAvg on seeded synthetic clients.
Side by side in one process: the vectorised engine (vmap over clients) against the per-client
loop reference. Targets (issue 7): 100 clients ≥ 15× faster than the loop and ≤ 2 s total;
1000 clients × 20 rounds ≤ 20 s with peak memory growth ≤ 500 MB; time per round growing
sub-linearly from 10 to 1000 clients.

    flock /tmp/bench.lock .venv/bin/python benchmarks/scalability.py
    python benchmarks/scalability.py --plot   # assets/scalability.png (needs matplotlib)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scalability.json"
PNG = ROOT / "assets" / "scalability.png"
SWEEP = (10, 25, 50, 100, 250, 500, 1000)


def _model():
    import torch

    from core.models import build_model

    torch.manual_seed(0)
    return build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)


def engines_side_by_side(clients: int, rounds: int, reps: int) -> dict:
    """Vectorised vs loop on the same clients, interleaved A B A B; median per-round ratio."""
    from core.federated import ScaleConfig, generate_synthetic_clients, run_federated

    data = generate_synthetic_clients(clients, 35, 9, 4, seed=0)
    cfg = ScaleConfig(client_counts=(clients,), rounds=rounds, adapt_steps=0)
    model = _model()
    per: dict[str, list[float]] = {"vectorized": [], "loop": []}
    totals: dict[str, list[float]] = {"vectorized": [], "loop": []}
    states = {}
    for _ in range(reps):
        for engine in ("vectorized", "loop"):
            t0 = time.perf_counter()
            res = run_federated(model, data, cfg, engine=engine)
            totals[engine].append(time.perf_counter() - t0)
            per[engine].append(float(np.median(res.round_seconds)))
            states[engine] = res.state
    diff = max(float((states["vectorized"][k] - states["loop"][k]).abs().max())
               for k in states["loop"])
    ratios = [lo / ve for lo, ve in zip(per["loop"], per["vectorized"])]
    return {
        "clients": clients, "rounds": rounds, "reps": reps,
        "vectorized_s_per_round": float(np.median(per["vectorized"])),
        "loop_s_per_round": float(np.median(per["loop"])),
        "vectorized_total_s": float(np.median(totals["vectorized"])),
        "loop_total_s": float(np.median(totals["loop"])),
        "speedup": float(np.median(ratios)), "speedup_per_rep": ratios,
        "max_abs_param_diff": diff,
    }


def sweep() -> list[dict]:
    """The scale verb over the client counts (vectorised), as a user would run it."""
    from core.federated import ScaleConfig, scale

    cfg = ScaleConfig(client_counts=SWEEP, rounds=20, samples_per_client=35)
    with tempfile.TemporaryDirectory() as tmp:
        res = scale("mlp", None, cfg, out_dir=Path(tmp) / "run",
                    measure_options={"budget_s": 0.05, "memory": False})
    keep = ("clients", "total_s", "setup_s", "time_per_round_s", "time_per_round_p95_s",
            "peak_memory_mb", "final_accuracy", "convergence_round", "bytes_per_round",
            "bytes_communicated", "chunk_size")
    return [{k: r[k] for k in keep} for r in res.report["scalability"]["results"]]


def main() -> None:
    import torch

    from core.measure import environment_manifest

    torch.set_num_threads(1)
    engines_side_by_side(4, 1, 1)  # warm-up (one-off vmap/autograd set-up), not reported
    t0 = time.perf_counter()
    at100 = engines_side_by_side(100, 20, 3)
    at1000 = engines_side_by_side(1000, 3, 1)
    rows = sweep()
    by = {r["clients"]: r for r in rows}
    growth = by[1000]["time_per_round_s"] / by[10]["time_per_round_s"]
    targets = {
        "speedup_100_clients": {"target": ">= 15", "measured": at100["speedup"],
                                "met": at100["speedup"] >= 15},
        "total_s_100_clients": {"target": "<= 2", "measured": by[100]["total_s"],
                                "met": by[100]["total_s"] <= 2},
        "total_s_1000_clients_20_rounds": {"target": "<= 20", "measured": by[1000]["total_s"],
                                           "met": by[1000]["total_s"] <= 20},
        "peak_memory_growth_mb_1000_clients": {"target": "<= 500",
                                               "measured": by[1000]["peak_memory_mb"],
                                               "met": by[1000]["peak_memory_mb"] <= 500},
        "time_per_round_growth_10_to_1000": {"target": "< 100 (sub-linear)",
                                             "measured": growth, "met": growth < 100},
    }
    result = {
        "benchmark": "scalability",
        "setup": "mlp 9→[32,16]→4, FedAvg (1 local epoch, batch 32, lr 0.1), 35 samples per "
                 "client, IID synthetic clients, 1 torch thread; total_s includes client "
                 "generation, per-round evaluation and the final adaptation pass",
        "vectorized_vs_loop_100_clients": at100,
        "vectorized_vs_loop_1000_clients": at1000,
        "sweep": rows,
        "targets": targets,
        "benchmark_seconds": time.perf_counter() - t0,
        "environment": environment_manifest(threads=1),
        "python": platform.python_version(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2, default=str))
    for name, t in targets.items():
        verdict = "met" if t["met"] else "MISSED"
        print(f"{name}: {t['measured']:.3f} (target {t['target']}) {verdict}")
    print(f"wrote {OUT}")


def plot() -> None:
    """Render assets/scalability.png from the JSON (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(OUT.read_text())
    rows = data["sweep"]
    x = [r["clients"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].loglog(x, [r["time_per_round_s"] * 1000 for r in rows], "o-", label="vectorised")
    lin = [rows[0]["time_per_round_s"] * 1000 * c / x[0] for c in x]
    axes[0].loglog(x, lin, "--", color="grey", label="linear growth")
    for key, marker in (("vectorized_vs_loop_100_clients", "s"),
                        ("vectorized_vs_loop_1000_clients", "s")):
        d = data[key]
        axes[0].loglog([d["clients"]], [d["loop_s_per_round"] * 1000], marker, color="C3",
                       label="per-client loop" if "100_" in key else None)
    axes[0].set(xlabel="clients", ylabel="ms per round (median)", title="Time per round")
    axes[0].legend(fontsize=8)
    axes[1].semilogx(x, [r["peak_memory_mb"] for r in rows], "o-")
    axes[1].set(xlabel="clients", ylabel="MB", title="Peak RSS growth")
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, dpi=110)
    print(f"wrote {PNG}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    plot() if "--plot" in sys.argv else main()
