"""The one summary sentence the Pruning, Quantization and Edge tabs lead with: the measured
figures as the report has them, and "not measured" (never a made-up 0) where it has none."""

from __future__ import annotations

from studio.widgets import outcome_sentence


def _report(**ratios) -> dict:
    return {"method": "structured-l2", "operation": "prune",
            "result": {"accuracy": 0.9712, "size_bytes": 20480},
            "ratios": {"accuracy_delta": -0.0035, "size_reduction": 3.9, "speedup_b1": 2.5,
                       "speedup_b64": 0.5, **ratios}}


def test_sentence_states_each_measured_figure_with_its_verdict():
    text = outcome_sentence(_report(), "prune-1", details="params 10 vs 40", versus=" vs FP32")
    assert text.startswith("**structured-l2** `prune-1`: accuracy **0.9712** (Δ -0.35 pt); ")
    assert "params 10 vs 40; 20.0 KB on disk (3.90× smaller)" in text
    assert "2.50× (faster) at batch 1 and 0.50× (slower) at batch 64 vs FP32." in text


def test_missing_figures_read_not_measured_and_a_larger_file_says_larger():
    text = outcome_sentence(_report(accuracy_delta=None, size_reduction=None, speedup_b1=None),
                            "fuse-1", name="fuse")
    assert text.startswith("**fuse** `fuse-1`")
    assert "Δ not measured" in text and "size ratio not measured" in text
    assert "speed-up not measured at batch 1" in text
    assert "0.00" not in text and "+0.00 pt" not in text
    assert "2.00× larger" in outcome_sentence(_report(size_reduction=0.5), "lowrank-1")
