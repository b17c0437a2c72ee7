"""How far can a measured ratio be trusted here? Run the protocol twice on the same model.

Two measurements of one model, each itself interleaved against an identical copy, show the
run-to-run spread of p50 latency (separate runs) and the A/A ratio spread (within one run).
Writes benchmarks/results/measure.json, and the noise band that every speed verdict uses
(core/measure/noise_band.json: the largest spread seen, with the machine it was seen on).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
from pathlib import Path

from _common import write_result

from core.data import load_dataset
from core.measure import measure_many
from core.measure._verdict import BAND_FILE
from core.models import model_for_data
from core.training import TrainConfig, train


def main(repeats: int = 8) -> dict:
    data = load_dataset("digits")
    model = model_for_data("cnn", data.input_shape, data.num_classes)
    train(model, data, TrainConfig(epochs=3))
    twin = copy.deepcopy(model)
    runs = []
    for _ in range(repeats):
        m = measure_many({"a": model, "b": twin}, data, memory=False)  # the default protocol
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
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    path = write_result("measure", {"model": "cnn digits", "repeats": repeats,
                                    "measured_at": dt.date.today().isoformat(),
                                    "load_average_1min": load, **out})
    write_band(json.loads(path.read_text()))
    return out


def _protocol() -> str:
    """The timing protocol's defaults, as measured here."""
    import inspect

    budget = inspect.signature(measure_many).parameters["budget_s"].default
    return f"budget {budget} s per variant and batch size, at most 10 rounds, ending " \
        "after 6 once two halves of the rounds agree within half the band"


def write_band(result: dict, source: str = "benchmarks/results/measure.json",
               measured_at: str | None = None) -> None:
    """The band within which a ratio is a tie: the widest A/A ratio deviation seen.

    Every verdict compares variants timed side by side in one run, so the A/A ratio (one
    model against its copy, interleaved) is the noise that applies; the run-to-run spread is
    recorded beside it (it applies only to figures taken from separate runs).
    """
    batches = {k: v for k, v in result.items() if k.startswith("batch_")}
    spread = max(v["aa_ratio_max_deviation_pct"] for v in batches.values())
    env = result.get("environment") or {}
    record = {
        "band": round(spread / 100, 4),
        "measured_by": "benchmarks/measure.py",
        "source": source,
        "measured_at": result.get("measured_at") or measured_at,
        "load_average_1min": result.get("load_average_1min"),
        "protocol": f"cnn on digits, measure_many's default protocol ({_protocol()}), "
                    f"{result.get('repeats')} repeats, 1 thread",
        "per_batch_pct": {bs: {k: round(v[k], 2) for k in ("run_to_run_spread_pct",
                                                            "aa_ratio_max_deviation_pct")}
                          for bs, v in batches.items()},
        "machine": {k: env.get(k) for k in ("cpu", "isa", "cores", "platform", "torch",
                                            "onnxruntime")},
    }
    BAND_FILE.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {BAND_FILE} (band ±{spread:.1f} %)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--band-from", type=Path, default=None,
                        help="write noise_band.json from this earlier results file instead of "
                             "measuring (default: measure now)")
    parser.add_argument("--measured-at", default=None,
                        help="with --band-from: when that file was measured, if it does not say "
                             "(default: none)")
    args = parser.parse_args()
    if args.band_from is not None:
        write_band(json.loads(args.band_from.read_text()), source=str(args.band_from),
                   measured_at=args.measured_at)
    else:
        for key, value in main().items():
            print(key, f"run-to-run spread {value['run_to_run_spread_pct']:.1f} %,",
                  f"A/A ratio within {value['aa_ratio_max_deviation_pct']:.1f} %")
