"""A/B test of two variants: route a share of requests to each, record latency and (from
posted-back labels) accuracy, and report the difference with a confidence interval and a
significance test — or say that there is not enough data yet."""

from __future__ import annotations

import collections
import hashlib
import math
import threading
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidParameterError, StudioError, check_range

SPLITS = ("hash", "random")
_KEEP = 100_000  # latencies and unlabelled predictions kept per test (oldest dropped first)


class Feedback(BaseModel):
    """``POST /feedback``: the true label(s) of an answered request."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(..., max_length=128, description="the request's X-Request-Id")
    label: int | list[int] = Field(..., description="the true class, one per row")


def welch_latency(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
                  ) -> dict[str, Any]:
    """Mean latency difference b − a (ms) with a Welch t-test and its confidence interval."""
    from scipy import stats

    res = stats.ttest_ind(np.asarray(b), np.asarray(a), equal_var=False)
    ci = res.confidence_interval(confidence_level=confidence)
    return {"test": "Welch t-test (unequal variances)", "difference_ms": _f(np.mean(b) -
            np.mean(a)), "ci": [_f(ci.low), _f(ci.high)], "p_value": _f(res.pvalue)}


def two_proportion(correct_a: int, n_a: int, correct_b: int, n_b: int, *,
                   confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy difference b − a with a two-proportion z-test (pooled) and a Wald interval."""
    from scipy import stats

    # scipy has no two-proportion z-test; these are its textbook formulas.
    pa, pb = correct_a / n_a, correct_b / n_b
    pooled = (correct_a + correct_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se0 == 0:
        p_value = 1.0
    else:
        p_value = float(2 * stats.norm.sf(abs(pb - pa) / se0))
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return {"test": "two-proportion z-test", "difference": pb - pa,
            "ci": [pb - pa - z * se, pb - pa + z * se], "p_value": p_value}


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class ABTest:
    """Routes requests between variants ``a`` and ``b`` and keeps the figures of both."""

    def __init__(self, a: str, b: str, *, share_b: float = 0.5, split: str = "hash",
                 seed: int = 0, min_samples: int = 30, confidence: float = 0.95) -> None:
        check_range("share_b", share_b, low=0.0, high=1.0, low_inclusive=False,
                    high_inclusive=False)
        check_range("confidence", confidence, low=0.5, high=1.0, high_inclusive=False)
        check_range("min_samples", min_samples, low=2, kind=int)
        if split not in SPLITS:
            raise InvalidParameterError("split", f"one of {list(SPLITS)}", split)
        self.a, self.b, self.share_b, self.split, self.seed = a, b, share_b, split, int(seed)
        self.min_samples, self.confidence = min_samples, confidence
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.latency_ms = {a: collections.deque(maxlen=_KEEP), b: collections.deque(maxlen=_KEEP)}
        self.requests = {a: 0, b: 0}
        self.correct = {a: 0, b: 0}
        self.labelled = {a: 0, b: 0}
        self._pending: collections.OrderedDict[str, tuple[str, list[int]]] = \
            collections.OrderedDict()

    def route(self, request_id: str) -> str:
        """The variant for a request: by a hash of (seed, request id), or a seeded draw."""
        if self.split == "hash":
            digest = hashlib.sha256(f"{self.seed}:{request_id}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
        else:
            with self._lock:
                u = float(self._rng.random())
        return self.b if u < self.share_b else self.a

    def record(self, request_id: str, variant: str, seconds: float,
               predictions: np.ndarray | None) -> None:
        """Keep an answered request's latency and its predictions (for later labels)."""
        with self._lock:
            self.requests[variant] += 1
            self.latency_ms[variant].append(seconds * 1000.0)
            if predictions is not None:
                self._pending[request_id] = (variant, [int(p) for p in predictions])
                while len(self._pending) > _KEEP:
                    self._pending.popitem(last=False)

    def feedback(self, request_id: str, label: int | list[int]) -> dict[str, Any]:
        """Score an answered request against its true label(s); each request counts once."""
        with self._lock:
            entry = self._pending.pop(request_id, None)
            if entry is None:
                raise UnknownRequestError(
                    f"Request '{request_id[:64]}' is unknown, already labelled or expired (the "
                    f"last {_KEEP:,} answered requests can be labelled).")
            variant, predicted = entry
            labels = [label] if isinstance(label, int) else list(label)
            if len(labels) != len(predicted):
                self._pending[request_id] = entry
                raise InvalidParameterError("label", f"{len(predicted)} label(s), one per row "
                                            "of the request", label)
            hits = sum(int(p == t) for p, t in zip(predicted, labels))
            self.correct[variant] += hits
            self.labelled[variant] += len(labels)
        return {"request_id": request_id, "variant": variant, "correct": hits,
                "rows": len(labels)}

    def report(self) -> dict[str, Any]:
        """Per-variant figures and the differences (b − a), each with its test or a status."""
        with self._lock:
            lat = {v: list(d) for v, d in self.latency_ms.items()}
            correct, labelled = dict(self.correct), dict(self.labelled)
            requests = dict(self.requests)
        per = {v: {"requests": requests[v], "labelled_rows": labelled[v],
                   "accuracy": correct[v] / labelled[v] if labelled[v] else None,
                   "latency_ms": _summary(lat[v])} for v in (self.a, self.b)}
        return {"a": self.a, "b": self.b, "share_b": self.share_b, "split": self.split,
                "seed": self.seed, "confidence": self.confidence,
                "min_samples": self.min_samples, "variants": per,
                "latency": self._latency_verdict(lat),
                "accuracy": self._accuracy_verdict(correct, labelled)}

    def _enough(self, counts: dict[str, int], what: str) -> str | None:
        if min(counts.values()) >= self.min_samples:
            return None
        have = ", ".join(f"{v}: {n}" for v, n in counts.items())
        return (f"not enough data yet: {self.min_samples} {what} per variant needed "
                f"(have {have})")

    def _latency_verdict(self, lat: dict[str, list[float]]) -> dict[str, Any]:
        status = self._enough({v: len(x) for v, x in lat.items()}, "requests")
        if status:
            return {"status": status, "significant": None}
        out = welch_latency(lat[self.a], lat[self.b], confidence=self.confidence)
        return {**out, **_verdict(out["p_value"], 1 - self.confidence, out["difference_ms"],
                                  "slower", "faster")}

    def _accuracy_verdict(self, correct: dict[str, int], labelled: dict[str, int]
                          ) -> dict[str, Any]:
        status = self._enough(labelled, "labelled rows")
        if status:
            return {"status": status, "significant": None}
        out = two_proportion(correct[self.a], labelled[self.a], correct[self.b],
                             labelled[self.b], confidence=self.confidence)
        return {**out, **_verdict(out["p_value"], 1 - self.confidence, out["difference"],
                                  "more accurate", "less accurate")}

    def add_routes(self, app: Any) -> None:
        """``POST /feedback`` and ``GET /ab/report`` on an endpoint app."""
        from fastapi.responses import JSONResponse

        @app.post("/feedback")
        def feedback(body: Feedback) -> Any:
            """Post the true label(s) of an answered request (by its X-Request-Id)."""
            try:
                return self.feedback(body.request_id, body.label)
            except UnknownRequestError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=404)
            except InvalidParameterError as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)

        @app.get("/ab/report")
        def ab_report() -> dict[str, Any]:
            """Per-variant latency and accuracy, differences with CI and p-value."""
            return self.report()

        app.state.ab = self


class UnknownRequestError(StudioError):
    """Feedback for a request id the test does not hold."""


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None, "p99": None}
    arr = np.asarray(values)
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99))}


def _verdict(p_value: float | None, alpha: float, difference: float | None, up: str,
             down: str) -> dict[str, Any]:
    significant = p_value is not None and p_value < alpha
    if not significant:
        words = "no significant difference"
    else:
        words = f"b is {up if (difference or 0) > 0 else down} than a"
    return {"status": words, "significant": significant}
