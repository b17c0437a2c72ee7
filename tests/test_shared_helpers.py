"""Helpers every area shares: Callbacks.sub (sub-task progress) and the one Pareto front."""

from __future__ import annotations

import pytest

from core.callbacks import Callbacks
from core.errors import CancelledError


def test_sub_maps_progress_prefixes_and_tags():
    seen, rows = [], []
    parent = Callbacks(on_progress=lambda f, m: seen.append((round(f, 6), m)),
                       on_metrics=rows.append)
    child = parent.sub(0.2, 0.6, "kd: ", tag={"student": "kd"})
    child.progress(0.0, "start")
    child.progress(0.5, "half")
    child.progress(1.0, "end")
    child.metrics({"epoch": 1})
    assert seen == [(0.2, "kd: start"), (0.4, "kd: half"), (0.6, "kd: end")]
    assert rows == [{"epoch": 1, "student": "kd"}]
    grandchild = child.sub(0.5, 1.0)  # nests: 0.5..1.0 of 0.2..0.6 is 0.4..0.6
    grandchild.progress(0.5, "x")
    assert seen[-1] == (0.5, "kd: x")


def test_sub_without_metrics_and_shared_cancel():
    rows = []
    parent = Callbacks(on_metrics=rows.append)
    quiet = parent.sub(0.0, 1.0, metrics=False)
    quiet.metrics({"loss": 1.0})
    parent.sub(0.0, 1.0).metrics({"loss": 2.0})
    assert rows == [{"loss": 2.0}]
    parent.cancel.cancel()
    with pytest.raises(CancelledError):
        quiet.progress(0.5, "after cancel")


def test_tuning_front_is_the_compare_front():
    """One Pareto implementation: a study's front (accuracy up, latency down) is the
    comparison's front on the same figures."""
    from core.compare import pareto_front
    from core.tuning import pareto_rows

    trials = [{"number": i, "values": {"accuracy": a, "latency_ms": lat}}
              for i, (a, lat) in enumerate([(0.9, 2.0), (0.8, 1.0), (0.85, 3.0), (0.9, 2.0),
                                            (0.7, 0.5), (0.6, 0.6)])]
    front = pareto_rows(trials, ["accuracy", "latency_ms"], ["maximize", "minimize"])
    assert [t["number"] for t in front] == [0, 1, 3, 4]
    same = pareto_front([t["values"] for t in trials],
                        [("accuracy", "max"), ("latency_ms", "min")])
    assert [trials[i] for i in same] == front
