"""Serving benchmark: the endpoint for a chosen variant vs its FP32 parent, and the A/B test.

1. Endpoint throughput and latency. A digits MLP (64→1024→1024→10, FP32) and its ORT static
   INT8 variant are each served by ``studio serve-model`` in its own child process (1 ONNX
   Runtime thread) on loopback. Clients in this process send one test row per request (JSON)
   at concurrency 1, 8 and 32; the two endpoints are driven **alternately** (A B A B …, several
   rounds, bounded in requests and seconds) so that a noisy neighbour hits both alike.
   Reported per variant and concurrency: requests/s, client-side p50/p99 (ms).
2. The A/B report on a live stream: an A/B endpoint (a = FP32, b = INT8, 50 %) gets test rows
   with their labels posted back; its report (latency and accuracy difference, CI, p-value).
3. The A/B tests on synthetic streams with a known truth, many seeds per sample size: how
   often a real difference (latency +20 %, accuracy −5 pt) is detected (power) and how often a
   null difference is "detected" (false-positive rate; should be near 1 − confidence = 5 %).

Writes ``benchmarks/results/serving.json``. Run: ``.venv/bin/python benchmarks/serving.py``
"""

from __future__ import annotations

import concurrent.futures as cf
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_result

CONCURRENCY = (1, 8, 32)
ROUNDS = 3
REQUESTS_PER_ROUND = 240  # per variant, per concurrency, per round
ROUND_LIMIT_S = 8.0  # a round stops early after this long
SYNTHETIC_SIZES = (50, 200, 800)  # requests per variant
SYNTHETIC_SEEDS = 200


def make_variants(scratch: Path) -> tuple[Path, Path, Any]:
    from core.data import load_dataset
    from core.quantization import quantize
    from core.runs import train_baseline
    from core.training import TrainConfig

    data = load_dataset("digits")
    fp32, int8 = scratch / "train-mlp", scratch / "quantize-int8"
    fast = {"budget_s": 0.05, "memory": False}
    train_baseline("mlp", data, out_dir=fp32, config=TrainConfig(epochs=3),
                   model_kwargs={"hidden_dims": [1024, 1024]}, measure_options=fast)
    quantize(fp32, data, "ort-static-int8", out_dir=int8, measure_options=fast)
    return fp32, int8, data


class Client:
    """One keep-alive HTTP connection per worker thread."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def predict(self, body: bytes, headers: dict[str, str]) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        self.conn.request("POST", "/predict", body=body, headers=headers)
        resp = self.conn.getresponse()
        payload = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {payload}")
        return (time.perf_counter() - t0) * 1000.0, payload


def drive(port: int, rows: np.ndarray, concurrency: int, n: int) -> tuple[list[float], float]:
    """``n`` requests (one row each) from ``concurrency`` clients; (latencies ms, seconds)."""
    bodies = [json.dumps({"inputs": rows[i % len(rows)][None].tolist()}).encode()
              for i in range(n)]
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + ROUND_LIMIT_S

    def worker(k: int) -> list[float]:
        client, out = Client(port), []
        for i in range(k, n, concurrency):
            if time.perf_counter() > deadline:
                break
            out.append(client.predict(bodies[i], headers)[0])
        client.conn.close()
        return out

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        parts = list(pool.map(worker, range(concurrency)))
    return [x for p in parts for x in p], time.perf_counter() - t0


def endpoint_load(procs: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for conc in CONCURRENCY:
        lat: dict[str, list[float]] = {name: [] for name in procs}
        secs: dict[str, float] = {name: 0.0 for name in procs}
        for name, proc in procs.items():  # warm-up: connections, allocator, ORT arenas
            drive(proc.port, rows, conc, 2 * conc)
        for _ in range(ROUNDS):
            for name, proc in procs.items():
                ts, s = drive(proc.port, rows, conc, REQUESTS_PER_ROUND)
                lat[name] += ts
                secs[name] += s
        out[str(conc)] = {name: {"requests": len(lat[name]),
                                 "requests_per_s": round(len(lat[name]) / secs[name], 1),
                                 "p50_ms": round(float(np.percentile(lat[name], 50)), 3),
                                 "p99_ms": round(float(np.percentile(lat[name], 99)), 3)}
                          for name in procs}
        print(f"concurrency {conc}: {out[str(conc)]}", flush=True)
    return out


def live_ab(fp32: Path, int8: Path, data: Any, n: int = 1200) -> dict[str, Any]:
    from core.serving import EndpointProcess

    X, y = data.split("test")
    proc = EndpointProcess(fp32, ab_with=int8, share_b=0.5, seed=0).wait_ready()
    try:
        client = Client(proc.port)
        t0 = time.perf_counter()
        for i in range(n):
            j = i % len(X)
            rid = f"live-{i}"
            client.predict(json.dumps({"inputs": X[j][None].tolist()}).encode(),
                           {"Content-Type": "application/json", "X-Request-Id": rid})
            client.conn.request("POST", "/feedback", body=json.dumps(
                {"request_id": rid, "label": int(y[j])}), headers={
                "Content-Type": "application/json"})
            client.conn.getresponse().read()
        report = proc.get_json("/ab/report")
        report["stream_s"] = round(time.perf_counter() - t0, 1)
        return report
    finally:
        proc.stop()


def synthetic_ab() -> dict[str, Any]:
    """Detection rates over many seeds, with a known true difference and with none."""
    from core.serving import ABTest

    def once(seed: int, n: int, lat_b: float, acc_b: float) -> tuple[bool, bool]:
        rng = np.random.default_rng(seed)
        ab = ABTest("a", "b", share_b=0.5, split="random", seed=seed, min_samples=30)
        for i in range(2 * n):
            rid = f"s{i}"
            v = ab.route(rid)
            ms, acc = (lat_b, acc_b) if v == "b" else (1.0, 0.95)
            truth = int(rng.integers(10))
            pred = truth if rng.random() < acc else (truth + 1) % 10
            ab.record(rid, v, float(rng.lognormal(np.log(ms), 0.3)) / 1000, np.array([pred]))
            ab.feedback(rid, truth)
        rep = ab.report()
        return bool(rep["latency"]["significant"]), bool(rep["accuracy"]["significant"])

    out = {}
    for label, lat_b, acc_b in (("true difference (latency +20 %, accuracy -5 pt)", 1.2, 0.90),
                                ("null difference", 1.0, 0.95)):
        rows = {}
        for n in SYNTHETIC_SIZES:
            hits = np.array([once(s, n, lat_b, acc_b) for s in range(SYNTHETIC_SEEDS)])
            rows[str(n)] = {"latency_detected": round(float(hits[:, 0].mean()), 3),
                            "accuracy_detected": round(float(hits[:, 1].mean()), 3)}
        out[label] = rows
        print(f"{label}: {rows}", flush=True)
    return out


def main() -> dict[str, Any]:
    from core.serving import EndpointProcess

    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    fp32, int8, data = make_variants(scratch)
    reports = {name: json.loads((p / "report.json").read_text()) for name, p in
               (("fp32", fp32), ("int8", int8))}
    X, _ = data.split("test")
    procs = {"fp32 parent": EndpointProcess(fp32), "ort-static-int8": EndpointProcess(int8)}
    try:
        for proc in procs.values():
            proc.wait_ready()
        load = endpoint_load(procs, X.astype(np.float32))
    finally:
        for proc in procs.values():
            proc.stop()
    result = {
        "model": "digits MLP 64-1024-1024-10", "variants": {
            n: {"accuracy": r["result"]["accuracy"], "size_bytes": r["result"]["size_bytes"],
                "in_process_p50_ms_b1": r["result"]["latency_ms"]["1"]["p50"]}
            for n, r in reports.items()},
        "protocol": {"concurrency": list(CONCURRENCY), "rounds": ROUNDS,
                     "requests_per_round": REQUESTS_PER_ROUND, "round_limit_s": ROUND_LIMIT_S,
                     "rows_per_request": 1, "server_threads": 1, "transport": "JSON, loopback"},
        "endpoint": load,
        "ab_live": live_ab(fp32, int8, data),
        "ab_synthetic": {"seeds": SYNTHETIC_SEEDS, "confidence": 0.95,
                         "rates": synthetic_ab()},
    }
    write_result("serving", result)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
