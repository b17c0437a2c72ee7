"""How far can a measured ratio be trusted here? Run the protocol twice on the same model.

Two measurements of one model, each itself interleaved against an identical copy, show the
run-to-run spread of p50 latency (separate runs) and the A/A ratio spread (within one run).
Writes benchmarks/results/measure.json.
"""

from __future__ import annotations

import copy
import statistics

from _common import write_result

from core.data import load_dataset
from core.measure import measure_many
from core.models import model_for_data
from core.training import TrainConfig, train


def main(repeats: int = 5) -> dict:
    data = load_dataset("digits")
    model = model_for_data("cnn", data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=3))
    twin = copy.deepcopy(model)
    runs = []
    for _ in range(repeats):
        m = measure_many({"a": model, "b": twin}, data, budget_s=0.5, memory=False)
        runs.append({bs: (m["a"].p50(int(bs)), m["b"].p50(int(bs))) for bs in ("1", "64")})
    out = {}
    for bs in ("1", "64"):
        a = [r[bs][0] for r in runs]
        aa = [r[bs][0] / r[bs][1] for r in runs]
        out[f"batch_{bs}"] = {
            "p50_ms_per_run": a,
            "run_to_run_spread_pct": 100 * (max(a) - min(a)) / statistics.median(a),
            "aa_ratio_per_run": aa,
            "aa_ratio_max_deviation_pct": 100 * max(abs(r - 1) for r in aa),
        }
    write_result("measure", {"model": "cnn digits", "repeats": repeats, **out})
    return out


if __name__ == "__main__":
    for key, value in main().items():
        print(key, f"run-to-run spread {value['run_to_run_spread_pct']:.1f} %,",
              f"A/A ratio within {value['aa_ratio_max_deviation_pct']:.1f} %")
