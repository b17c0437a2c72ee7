"""Latency protocol: warm-up, interleaved rounds across variants, fixed threads, p50/p95."""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from core.measure._lock import measurement_lock
from core.measure._predictor import Predictor

# Rounds always run before the estimate may be found stable (three even, three odd).
MIN_STABLE_ROUNDS = 6


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
    stable_within: float | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Time every predictor A B A B … per batch size; returns ``{name: {"1": {p50, p95}}}``.

    Each variant gets about ``budget_s`` seconds per batch size, spread over ``rounds``
    rounds, so that a noisy neighbour hits all variants alike. With ``stable_within`` (a
    relative tolerance, e.g. half the verdict's noise band) a batch size ends early, after
    at least ``MIN_STABLE_ROUNDS`` rounds, once every variant's p50 over the even rounds and
    over the odd rounds agree within it: two independent halves of the samples give the
    same figure, so more rounds would not change it beyond that tolerance.
    """
    with measurement_lock():  # no other timing in this process while these rounds run
        return _interleaved(predictors, X, batch_sizes, budget_s, rounds, check,
                            stable_within)


# Warm-up: at least this many calls and WARM_UP_S seconds (a runtime's first call allocates;
# a long call needs no more: the interleaved rounds that follow are timed only after it).
WARM_UP_CALLS, WARM_UP_S = 2, 0.05


def _calls_per_round(pred: Predictor, xb: np.ndarray, budget_s: float, rounds: int) -> int:
    """Warm a predictor up (``WARM_UP_CALLS`` calls and ``WARM_UP_S``) and size its calls
    per round."""
    with pred.pinned_threads():
        start, n = time.perf_counter(), 0
        while n < WARM_UP_CALLS or (time.perf_counter() - start < WARM_UP_S and n < 200):
            pred(xb)
            n += 1
        per_call = (time.perf_counter() - start) / n
    return max(1, int(budget_s / rounds / max(per_call, 1e-6)))


def _halves_agree(rounds: list[list[float]], within: float) -> bool:
    """Whether the p50 over the even rounds and over the odd rounds agree within ``within``."""
    even = np.median(np.concatenate(rounds[0::2]))
    odd = np.median(np.concatenate(rounds[1::2]))
    return abs(even - odd) <= within * min(even, odd)


def _time_batch(predictors: Mapping[str, Predictor], xb: np.ndarray, budget_s: float,
                rounds: int, check, stable_within: float | None) -> dict[str, list[list[float]]]:
    """Per variant, the call times (ms) of each round at one batch size."""
    calls = {name: _calls_per_round(p, xb, budget_s, rounds) for name, p in predictors.items()}
    times: dict[str, list[list[float]]] = {name: [] for name in predictors}
    for r in range(rounds):
        if check is not None:
            check()
        for name, pred in predictors.items():
            ts = []
            with pred.pinned_threads():
                for _ in range(calls[name]):
                    t0 = time.perf_counter_ns()
                    pred(xb)
                    ts.append((time.perf_counter_ns() - t0) / 1e6)
            times[name].append(ts)
        if stable_within is not None and r + 1 >= MIN_STABLE_ROUNDS and all(
                _halves_agree(t, stable_within) for t in times.values()):
            break
    return times


def _interleaved(predictors: Mapping[str, Predictor], X: np.ndarray,
                 batch_sizes: tuple[int, ...], budget_s: float, rounds: int,
                 check, stable_within: float | None = None
                 ) -> dict[str, dict[str, dict[str, float]]]:
    result: dict[str, dict[str, dict[str, float]]] = {name: {} for name in predictors}
    for bs in batch_sizes:
        # A fixed-batch ONNX model is timed only at the batch size it accepts.
        group = {name: p for name, p in predictors.items()
                 if getattr(p, "accepts", lambda _: True)(bs)}
        times = _time_batch(group, batch_of(X, bs), budget_s, rounds, check, stable_within)
        for name, per_round in times.items():
            arr = np.concatenate(per_round)
            result[name][str(bs)] = {
                "p50": float(np.percentile(arr, 50)),
                "p95": float(np.percentile(arr, 95)),
                # the fastest call: what the code does when nothing preempts it (on a loaded
                # machine a call longer than a scheduler slice is preempted in most runs)
                "min": float(arr.min()),
                "runs": int(arr.size),
                "rounds": len(per_round),
            }
    return result
