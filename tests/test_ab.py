"""A/B tests: the split, the 'not enough data' state, and tests that detect a large known
difference and not a null one (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.errors import InvalidParameterError
from core.serving import ABTest


@pytest.mark.parametrize("split", ["hash", "random"])
def test_split_follows_the_configured_share(split):
    ab = ABTest("a", "b", share_b=0.2, split=split, seed=3)
    routed = [ab.route(f"req-{i}") for i in range(4000)]
    share = routed.count("b") / len(routed)
    assert 0.17 < share < 0.23  # binomial sd at n=4000 is 0.0063: ±0.03 is ~5 sd
    if split == "hash":  # deterministic: the same id always goes to the same variant
        assert [ab.route(f"req-{i}") for i in range(50)] == routed[:50]
        other = ABTest("a", "b", share_b=0.2, split=split, seed=4)
        assert [other.route(f"req-{i}") for i in range(200)] != routed[:200]


def _feed(ab, rng, *, n, lat_a, lat_b, acc_a, acc_b):
    for i in range(n):
        rid = f"r{i}"
        v = ab.route(rid)
        ms, acc = (lat_b, acc_b) if v == "b" else (lat_a, acc_a)
        truth = int(rng.integers(10))
        pred = truth if rng.random() < acc else (truth + 1) % 10
        ab.record(rid, v, rng.normal(ms, ms * 0.2) / 1000.0, np.array([pred]))
        ab.feedback(rid, truth)


def test_not_enough_data_is_stated_below_the_minimum():
    ab = ABTest("a", "b", min_samples=30)
    _feed(ab, np.random.default_rng(0), n=20, lat_a=1.0, lat_b=2.0, acc_a=0.9, acc_b=0.5)
    report = ab.report()
    for part in ("latency", "accuracy"):
        assert report[part]["status"].startswith("not enough data yet")
        assert report[part]["significant"] is None and "p_value" not in report[part]


def test_a_large_known_difference_is_detected():
    ab = ABTest("a", "b", min_samples=30)
    _feed(ab, np.random.default_rng(1), n=800, lat_a=1.0, lat_b=1.5, acc_a=0.95, acc_b=0.80)
    lat, acc = ab.report()["latency"], ab.report()["accuracy"]
    assert lat["significant"] and lat["status"] == "b is slower than a"
    assert lat["ci"][0] < 0.5 < lat["ci"][1] and lat["ci"][0] > 0
    assert acc["significant"] and acc["status"] == "b is less accurate than a"
    assert acc["ci"][0] < -0.15 < acc["ci"][1] < 0


def test_a_null_difference_is_not_detected():
    ab = ABTest("a", "b", min_samples=30)
    _feed(ab, np.random.default_rng(2), n=800, lat_a=1.0, lat_b=1.0, acc_a=0.9, acc_b=0.9)
    lat, acc = ab.report()["latency"], ab.report()["accuracy"]
    assert not lat["significant"] and lat["ci"][0] < 0 < lat["ci"][1]
    assert not acc["significant"] and acc["ci"][0] < 0 < acc["ci"][1]


def test_bad_settings_and_feedback_are_refused():
    with pytest.raises(InvalidParameterError, match="share_b"):
        ABTest("a", "b", share_b=1.0)
    with pytest.raises(InvalidParameterError, match="split"):
        ABTest("a", "b", split="round-robin")
    ab = ABTest("a", "b")
    ab.record("x", "a", 0.001, np.array([1, 2]))
    with pytest.raises(InvalidParameterError, match="2 label"):
        ab.feedback("x", 1)
    assert ab.feedback("x", [1, 0])["correct"] == 1
    with pytest.raises(Exception, match="already labelled"):
        ab.feedback("x", [1, 0])


def test_ab_endpoint_routes_records_and_reports(baseline_dir, digits):
    from core.serving import build_endpoint

    app = build_endpoint(baseline_dir, ab_with=baseline_dir / "model.onnx",
                         ab_options={"share_b": 0.5, "min_samples": 5})
    X, y = digits.split("test")
    with TestClient(app) as client:
        seen = set()
        for i in range(24):
            r = client.post("/predict", json={"inputs": X[i:i + 1].tolist()},
                            headers={"X-Request-Id": f"q{i}"})
            assert r.status_code == 200 and r.headers["X-Request-Id"] == f"q{i}"
            seen.add(r.json()["variant"])
            assert client.post("/feedback", json={"request_id": f"q{i}",
                                                  "label": int(y[i])}).status_code == 200
        assert client.post("/feedback", json={"request_id": "nope", "label": 1}).status_code \
            == 404
        report = client.get("/ab/report").json()
    assert seen == {report["a"], report["b"]}
    per = report["variants"]
    assert sum(v["requests"] for v in per.values()) == 24
    assert sum(v["labelled_rows"] for v in per.values()) == 24
    assert "p_value" in report["accuracy"] or report["accuracy"]["status"].startswith("not")
