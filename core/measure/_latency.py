"""Latency protocol: warm-up, interleaved rounds across variants, fixed threads, p50/p95."""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from core.measure._lock import measurement_lock
from core.measure._predictor import Predictor


def batch_of(X: np.ndarray, batch_size: int) -> np.ndarray:
    """A batch of exactly ``batch_size`` rows taken (cyclically) from X."""
    reps = -(-batch_size // max(len(X), 1))
    return np.ascontiguousarray(np.concatenate([X] * reps)[:batch_size])


def interleaved_latency(
    predictors: Mapping[str, Predictor],
    X: np.ndarray,
    *,
    batch_sizes: tuple[int, ...] = (1, 64),
    budget_s: float = 0.4,
    rounds: int = 10,
    check=None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Time every predictor A B A B … per batch size; returns ``{name: {"1": {p50, p95}}}``.

    Each variant gets about ``budget_s`` seconds per batch size, spread over ``rounds``
    rounds, so that a noisy neighbour hits all variants alike.
    """
    with measurement_lock():  # no other timing in this process while these rounds run
        return _interleaved(predictors, X, batch_sizes, budget_s, rounds, check)


def _interleaved(predictors: Mapping[str, Predictor], X: np.ndarray,
                 batch_sizes: tuple[int, ...], budget_s: float, rounds: int,
                 check) -> dict[str, dict[str, dict[str, float]]]:
    result: dict[str, dict[str, dict[str, float]]] = {name: {} for name in predictors}
    all_predictors = predictors
    for bs in batch_sizes:
        xb = batch_of(X, bs)
        calls: dict[str, int] = {}
        # A fixed-batch ONNX model is timed only at the batch size it accepts.
        predictors = {name: p for name, p in all_predictors.items()
                      if getattr(p, "accepts", lambda _: True)(bs)}
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for name, pred in predictors.items():
            with pred.pinned_threads():
                start, n = time.perf_counter(), 0
                while n < 5 or (time.perf_counter() - start < 0.05 and n < 200):
                    pred(xb)
                    n += 1
                per_call = (time.perf_counter() - start) / n
            calls[name] = max(1, int(budget_s / rounds / max(per_call, 1e-6)))
        for _ in range(rounds):
            if check is not None:
                check()
            for name, pred in predictors.items():
                with pred.pinned_threads():
                    for _ in range(calls[name]):
                        t0 = time.perf_counter_ns()
                        pred(xb)
                        times[name].append((time.perf_counter_ns() - t0) / 1e6)
        for name, ts in times.items():
            arr = np.asarray(ts)
            result[name][str(bs)] = {
                "p50": float(np.percentile(arr, 50)),
                "p95": float(np.percentile(arr, 95)),
                # the fastest call: what the code does when nothing preempts it (on a loaded
                # machine a call longer than a scheduler slice is preempted in most runs)
                "min": float(arr.min()),
                "runs": int(arr.size),
            }
    return result
