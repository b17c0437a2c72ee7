"""Comparison: the Pareto front, one-run re-measurement, offline HTML and the other exports."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest

from core.compare import dominates, pareto_front

FAST = {"budget_s": 0.02, "memory": False}


def test_pareto_front_is_the_non_dominated_set():
    rows = [
        {"size_bytes": 100, "p50_b64": 1.0, "accuracy": 0.90},  # 0 dominated by 1
        {"size_bytes": 50, "p50_b64": 0.5, "accuracy": 0.95},   # 1 front
        {"size_bytes": 10, "p50_b64": 2.0, "accuracy": 0.80},   # 2 front (smallest)
        {"size_bytes": 60, "p50_b64": 0.4, "accuracy": 0.95},   # 3 front (fastest)
        {"size_bytes": 50, "p50_b64": 0.5, "accuracy": 0.95},   # 4 duplicate of 1: kept
        {"size_bytes": 5, "p50_b64": None, "accuracy": 0.99},   # 5 no latency: never on it
        {"size_bytes": 200, "p50_b64": 3.0, "accuracy": 0.99},  # 6 front (most accurate)
    ]
    assert pareto_front(rows) == [1, 2, 3, 4, 6]
    assert dominates(rows[1], rows[0], [("size_bytes", "min"), ("accuracy", "max")])
    assert not dominates(rows[1], rows[4], [("size_bytes", "min"), ("accuracy", "max")])
    # One objective: only the best survive; maximise vs minimise matters.
    assert pareto_front(rows, [("accuracy", "max")]) == [5, 6]
    assert pareto_front(rows, [("size_bytes", "min")]) == [5]
    assert pareto_front([]) == []
    with pytest.raises(ValueError):
        pareto_front(rows, [("accuracy", "up")])


@pytest.fixture(scope="module")
def quantized_dir(baseline_dir, tmp_path_factory):
    from core.quantization import quantize

    out = baseline_dir.parent / "quantize-int8"
    if not out.exists():
        quantize(baseline_dir, None, "ort-static-int8", out_dir=out, measure_options=FAST)
    return out


def test_compare_cli_remeasures_side_by_side_and_exports(baseline_dir, quantized_dir, tmp_path):
    from core.cli import run

    out = tmp_path / "cmp"
    code = run(["compare", str(baseline_dir), str(quantized_dir), "--out", str(out),
                "--budget", "0.02", "--no-memory"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows = {r["variant"]: r for r in report["rows"]}
    base, q = rows[baseline_dir.name], rows[quantized_dir.name]
    assert base["baseline"] and base["speedup_b64"] == pytest.approx(1.0)
    assert base["accuracy_delta"] == 0.0
    # Deltas are computed from the figures in the same table (one measurement run).
    assert q["size_reduction"] == pytest.approx(base["size_bytes"] / q["size_bytes"])
    assert q["speedup_b1"] == pytest.approx(base["p50_b1"] / q["p50_b1"])
    assert q["accuracy_delta"] == pytest.approx(q["accuracy"] - base["accuracy"])
    assert q["parent"] == baseline_dir.name and q["method"] == "ort-static-int8"
    expected = {report["rows"][i]["variant"] for i in pareto_front(report["rows"])}
    assert set(report["pareto"]) == expected and expected
    for key in ("size_bytes", "params", "macs", "p95_b64", "throughput_per_s", "f1_macro"):
        assert base[key] is not None
    assert report["environment"]["threads"] == 1 and "cpu" in report["environment"]
    # The exports, each with the environment manifest.
    html = (out / "report.html").read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I), "external script in HTML"
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", html, re.I)
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js is inline
    assert report["environment"]["cpu"] in html and "Pareto" in html
    md = (out / "report.md").read_text()
    assert f"| {quantized_dir.name} |" in md and "## Environment" in md
    csv_text = (out / "comparison.csv").read_text()
    assert csv_text.startswith("# cpu:")
    frame = pd.read_csv(io.StringIO(csv_text), comment="#")
    assert list(frame["variant"]) == [baseline_dir.name, quantized_dir.name]
    assert frame["accuracy"].tolist() == pytest.approx([base["accuracy"], q["accuracy"]])


def test_charts_and_lineage(baseline_dir, quantized_dir):
    from core.compare import all_figures, lineage
    from core.recipes import recipe_from_lineage

    chain = lineage(quantized_dir)
    assert [c["operation"] for c in chain] == ["train", "quantize"]
    assert chain[0]["run_id"] == baseline_dir.name
    rows = [{"variant": baseline_dir.name, "operation": "train", "method": None,
             "parent": None, "size_bytes": 2000, "p50_b64": 1.0, "p50_b1": 0.1,
             "accuracy": 0.9, "pareto": False, "baseline": True, "params": 10},
            {"variant": quantized_dir.name, "operation": "quantize",
             "method": "ort-static-int8", "parent": baseline_dir.name, "size_bytes": 500,
             "p50_b64": 0.5, "p50_b1": 0.05, "accuracy": 0.9, "pareto": True,
             "baseline": False, "params": 10}]
    figs = all_figures(rows)
    assert set(figs) == {"size_latency", "accuracy_latency", "metric_bars", "lineage"}
    front = [t for t in figs["size_latency"].data if "Pareto" in (t.name or "")]
    assert front and list(front[0].x) == [0.5]
    assert len(figs["lineage"].layout.annotations) == 1  # one parent → child arrow
    # "Save as recipe": the lineage replays as train + quantize steps.
    recipe = recipe_from_lineage(quantized_dir)
    assert [s.kind for s in recipe.steps] == ["train", "quantize"]
    assert recipe.steps[1].options["method"] == "ort-static-int8"
    assert recipe.model == "cnn" and recipe.data == "digits"


def test_compare_refuses_variants_on_different_data(baseline_dir, tmp_path):
    from core.compare import compare
    from core.errors import DataError
    from core.runs import train_baseline
    from core.training import TrainConfig

    other = tmp_path / "train-wine"
    train_baseline("mlp", "wine", out_dir=other, config=TrainConfig(epochs=1),
                   measure_options=FAST)
    with pytest.raises(DataError, match="one data set"):
        compare([baseline_dir, other], out_dir=tmp_path / "cmp", measure_options=FAST)
    assert not (tmp_path / "cmp").exists()
