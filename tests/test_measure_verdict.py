"""One speed verdict with a measured noise band; CPU features that say 'unknown'; the lock."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from core.measure import FASTER, NO_FASTER, SLOWER, noise_band, speed_verdict


@pytest.mark.parametrize(("ratio", "verdict"), [
    (1.5, FASTER), (1.05, FASTER), (1.049, NO_FASTER), (1.0, NO_FASTER), (0.96, NO_FASTER),
    (0.95, SLOWER), (0.3, SLOWER), (None, None), (float("nan"), None), (0.0, None)])
def test_verdict_bands(ratio, verdict):
    assert speed_verdict(ratio, 0.05) == verdict


def test_default_band_is_the_recorded_measurement():
    from core.measure._verdict import noise_record

    record = noise_record()
    band = noise_band()
    assert 0 < band < 1 and band == record["band"]
    assert record["measured_by"] == "benchmarks/measure.py" and record["machine"]["cpu"]
    assert speed_verdict(1.0) == NO_FASTER
    assert speed_verdict((1 + band) * 1.001) == FASTER
    assert speed_verdict(1 / ((1 + band) * 1.001)) == SLOWER


def _measured(p50_b1: float, p50_b64: float) -> SimpleNamespace:
    lat = {"1": {"p50": p50_b1}, "64": {"p50": p50_b64}}
    return SimpleNamespace(latency_ms=lat, p50=lambda bs: lat[str(bs)]["p50"], size_bytes=100,
                           accuracy=0.9)


def test_report_warnings_follow_the_verdict():
    """A tie within the band is 'no faster', beyond it 'slower'; faster says nothing."""
    from core.artifacts import speed_verdicts, speed_warnings
    from core.artifacts._report import ratios

    band = noise_band()
    base = _measured(1.0, 1.0)
    res = _measured(1.0, 1.0 * (1 + 3 * band))  # b1 a tie, b64 clearly slower
    notes = speed_warnings(base, res, "The variant")
    assert speed_verdicts(ratios(base, res)) == {"speedup_b1": NO_FASTER,
                                                 "speedup_b64": SLOWER}
    assert len(notes) == 2
    assert "no faster than the baseline" in notes[0] and "batch 1 " in notes[0]
    assert "slower than the baseline" in notes[1] and "batch 64 " in notes[1]
    assert speed_warnings(base, _measured(0.5, 0.5), "The variant") == []


def test_compare_and_auto_use_the_same_verdict():
    from core.auto._auto import _ratio_text
    from core.compare._compare import _warnings

    band = noise_band()
    tie, slow = 1 + band / 2, 1 / (1 + 3 * band)
    rows = [{"variant": "base", "baseline": True},
            {"variant": "v", "baseline": False, "speedup_b1": tie, "speedup_b64": slow}]
    notes = _warnings(rows)
    assert len(notes) == 2 and "no faster" in notes[0] and "slower" in notes[1]
    assert _ratio_text(tie, "faster").startswith("no faster")
    assert _ratio_text(slow, "faster").endswith("slower")
    assert _ratio_text(2.0, "faster") == "2.00× faster"


# --- CPU features -----------------------------------------------------------------------------
@pytest.fixture
def caps(monkeypatch):
    """Replace torch's detected capabilities with a given mapping (caches bypassed)."""
    from core.measure import _environment as env

    uncached = env._cpuinfo.__wrapped__

    def use(mapping):
        monkeypatch.setattr(env, "_capabilities", lambda: dict(mapping))
        monkeypatch.setattr(env, "_cpuinfo", uncached)
        return env

    return use


def test_unknown_features_are_unknown_not_absent(caps):
    env = caps({})
    assert env.int8_dot_product() is None
    assert env.isa_text() == "unknown instruction set"
    assert "unknown" in env.int8_dot_text()
    manifest = env.environment_manifest(threads=1)
    assert manifest["isa"] is None and manifest["int8_dot_product"] is None


def test_features_from_torch_capabilities(caps):
    env = caps({"architecture": "x86_64", "avx2": True, "fma3": True, "avx512_vnni": False,
                "cpu_name": "Test CPU"})
    assert env.cpu_isa() == ["avx2", "fma"] and env.int8_dot_product() is False
    assert "no INT8 dot-product" in env.int8_dot_text()
    env = caps({"architecture": "x86_64", "avx2": True, "avx_vnni": True})
    assert env.int8_dot_product() is True
    env = caps({"architecture": "aarch64", "neon": True, "dot": True})
    assert env.int8_dot_product() is True and env.cpu_isa() == ["asimd", "asimddp"]
    env = caps({"architecture": "riscv64"})
    assert env.int8_dot_product() is None


# --- the measurement lock ---------------------------------------------------------------------
def test_timings_hold_one_process_wide_lock():
    """While one thread times with its own torch thread count, no other timing can start,
    and the count is restored afterwards."""
    import torch

    from core.measure import as_predictor
    from core.measure._lock import _LOCK

    before = torch.get_num_threads()
    pred = as_predictor(torch.nn.Linear(3, 2), threads=1)
    inside, leave, seen = threading.Event(), threading.Event(), []

    def timing() -> None:
        with pred.pinned_threads():
            seen.append(torch.get_num_threads())
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=timing)
    t.start()
    assert inside.wait(10)
    assert not _LOCK.acquire(blocking=False)  # another thread cannot start a timing now
    leave.set()
    t.join(10)
    assert seen == [1] and torch.get_num_threads() == before
    assert _LOCK.acquire(blocking=False)
    _LOCK.release()


def _take_the_lock() -> None:
    from core.measure import measurement_lock

    with measurement_lock():
        pass


def test_a_forked_job_starts_with_a_free_lock():
    """A job forked while another thread times must not wait forever for that thread."""
    import multiprocessing as mp

    from core.measure import measurement_lock

    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with measurement_lock():
            inside.set()
            leave.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(10)
        child = mp.get_context("fork").Process(target=_take_the_lock)
        child.start()
        child.join(20)
        alive = child.is_alive()
        if alive:
            child.kill()
        assert not alive and child.exitcode == 0
    finally:
        leave.set()
        t.join(10)


# --- the Quantization tab's star --------------------------------------------------------------
def _qreport(method: str, *, test_delta: float, val_drop: float, speedup: float) -> dict:
    lat = {"1": {"p50": 1.0, "p95": 1.0}, "64": {"p50": 1.0, "p95": 1.0}}
    measured = {"size_bytes": 1024, "accuracy": 0.9, "latency_ms": lat}
    return {"operation": "quantize", "parent": "base", "method": method,
            "baseline": measured, "result": measured,
            "ratios": {"speedup_b1": speedup, "speedup_b64": speedup, "size_reduction": 4.0,
                       "accuracy_delta": test_delta},
            "quantization": {"fp32_val_accuracy": 0.9, "quantized_val_accuracy": 0.9 - val_drop}}


def test_quantization_tab_star_uses_validation_and_the_verdict():
    from studio.tabs.quantization import results_rows

    band = noise_band()
    reports = [
        # test split within tolerance, validation not: the verb would refuse it, so no star
        ("a", _qreport("ort-static-int8", test_delta=0.0, val_drop=0.05, speedup=4.0)),
        # test split beyond tolerance, validation within: the star (like the verb)
        ("b", _qreport("ort-dynamic-int8", test_delta=-0.05, val_drop=0.0, speedup=2.0)),
        # fastest of the rest but a tie with FP32: never "fastest"
        ("c", _qreport("ort-fp16", test_delta=0.0, val_drop=0.0, speedup=1 + band / 2)),
    ]
    rows = {r["variant"]: r["note"] for r in results_rows(reports, "base", 0.01)}
    assert rows["b"].startswith("★") and "★" not in rows["a"] + rows["c"]
    assert "no faster than FP32 (within noise)" in rows["c"]
    slow = [("d", _qreport("ort-fp16", test_delta=0.0, val_drop=0.0, speedup=0.5))]
    note = results_rows(slow, "base", 0.01)[1]["note"]
    assert "★" not in note and "slower than FP32 at batch 1" in note


class _FakeClock:
    """perf_counter(_ns) for the latency module: each call of a fake model takes ``cost(n)``
    ms, n counting the calls (no real timing in tests)."""

    def __init__(self, cost):
        self.now_ns, self.calls, self.cost = 0, 0, cost

    def perf_counter_ns(self):
        return self.now_ns

    def perf_counter(self):
        return self.now_ns / 1e9

    def model(self):
        clock = self

        class Model:
            def pinned_threads(self):
                import contextlib

                return contextlib.nullcontext()

            def __call__(self, x):
                clock.calls += 1
                clock.now_ns += int(clock.cost(clock.calls) * 1e6)

        return Model()


@pytest.mark.parametrize("cost, rounds", [
    (lambda n: 1.0, 6),  # every call alike: the two halves agree at the first look
    # calls 1 to ~5 ms at random (a busy machine): the halves never agree within 1 %
    (lambda n, rng=__import__("random").Random(0): 1.0 + rng.expovariate(1.0), 10),
])
def test_latency_stops_early_only_when_two_halves_agree(monkeypatch, cost, rounds):
    import numpy as np

    from core.measure import _latency

    clock = _FakeClock(cost)
    monkeypatch.setattr(_latency, "time", clock)
    preds = {"a": clock.model(), "b": clock.model()}
    X = np.zeros((4, 3), dtype=np.float32)
    full = _latency.interleaved_latency(preds, X, batch_sizes=(1,), budget_s=0.04)
    assert full["a"]["1"]["rounds"] == 10  # no tolerance given: every round runs
    lat = _latency.interleaved_latency(preds, X, batch_sizes=(1,), budget_s=0.04,
                                       stable_within=0.01)
    assert lat["a"]["1"]["rounds"] == lat["b"]["1"]["rounds"] == rounds
