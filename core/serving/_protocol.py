"""The measurement protocol as data, for agents that time variants on another device."""

from __future__ import annotations

import inspect
from typing import Any

# The warm-up of core.measure.interleaved_latency (literals in its loop, copied here):
# at least 5 calls, then until 50 ms have passed, at most 200 calls.
WARMUP = {"warmup_min_calls": 5, "warmup_s": 0.05, "warmup_max_calls": 200}
PROTOCOL_VERSION = 1


def protocol() -> dict[str, Any]:
    """Batch sizes, time budget, rounds, threads and warm-up of the studio's latency protocol
    (read from core.measure's defaults, so an agent times what the studio times)."""
    from core.measure import interleaved_latency, measure_many
    from core.measure._target import Target

    lat = inspect.signature(interleaved_latency).parameters
    budget = inspect.signature(measure_many).parameters["budget_s"].default
    target = Target()
    return {"version": PROTOCOL_VERSION, "batch_sizes": list(target.batch_sizes),
            "budget_s": budget, "rounds": lat["rounds"].default,
            "threads": target.thread_counts[0], **WARMUP}
