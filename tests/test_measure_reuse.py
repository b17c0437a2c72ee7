"""A parent run's figures are reused only where its report proves the same measurement."""

from __future__ import annotations

import json

import pytest

MEASURE = {"budget_s": 0.02}  # memory on: the peak is one of the reused figures


@pytest.fixture(scope="module")
def parent(tmp_path_factory, digits):
    from core.runs import train_baseline
    from core.training import TrainConfig

    out = tmp_path_factory.mktemp("reuse") / "parent"
    train_baseline("mlp", digits, out_dir=out, config=TrainConfig(epochs=1),
                   measure_options=MEASURE)
    return out


def test_a_variant_takes_its_parents_figures_for_the_same_files_rows_and_machine(
        parent, tmp_path):
    from core.quantization import quantize

    before = json.loads((parent / "report.json").read_text())["result"]
    report = quantize(parent, config="ort-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=MEASURE).report
    base = report["baseline"]
    assert base["extra"]["reused_from_parent"]["run"] == parent.name
    for key in ("accuracy", "f1_macro", "params", "macs", "peak_memory_mb"):
        assert base[key] == before[key]
    assert base["latency_ms"]["1"]["runs"] > 0  # timed here, beside the result
    assert "reused_from_parent" not in report["result"]["extra"]


def test_a_parent_whose_report_does_not_prove_it_is_measured_again(parent, tmp_path):
    import shutil

    from core.quantization import quantize

    copy = tmp_path / "copy"
    shutil.copytree(parent, copy)
    report = json.loads((copy / "report.json").read_text())
    report["result"]["accuracy"] = 0.0  # a report that no longer matches ...
    for entry in report["artifacts"]:
        entry["sha256"] = "0" * 64  # ... because its files are not the ones listed
    (copy / "report.json").write_text(json.dumps(report))
    again = quantize(copy, config="ort-dynamic-int8", out_dir=tmp_path / "c",
                     measure_options=MEASURE).report
    assert "reused_from_parent" not in again["baseline"]["extra"]
    assert again["baseline"]["accuracy"] > 0.5
