"""The ModelCompressor facade chains verbs and keeps the lineage."""

from __future__ import annotations

import zipfile

from tests.conftest import FAST_MEASURE


def test_prune_then_quantize_chain(baseline_dir, tmp_path):
    from core import ModelCompressor

    comp = ModelCompressor(baseline_dir, workdir=tmp_path, measure_options=FAST_MEASURE)
    comp.prune("structured-l2", sparsity=0.5, finetune_epochs=1).quantize("ort-dynamic-int8")
    first, second = comp.history
    assert first.report["operation"] == "prune" and second.report["operation"] == "quantize"
    assert second.report["parent"] == first.run_dir.name
    assert first.report["result"]["params"] < first.report["baseline"]["params"]
    with zipfile.ZipFile(comp.save(tmp_path / "bundle.zip")) as zf:
        assert "report.json" in zf.namelist()
