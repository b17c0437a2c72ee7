"""Recipes: validation, a run through the verbs, the parity stop, and 'save as recipe'."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidParameterError
from core.recipes import ParityError, Recipe, recipe_from_lineage, run_recipe

FAST = {"budget_s": 0.02, "memory": False}


@pytest.mark.parametrize("values, match", [
    ({"steps": []}, "steps"),
    ({"steps": [{"bake": {}}]}, r"steps\[0\]"),
    ({"steps": [{"prune": {}}, {"train": {}}]}, "'train' only as the first step"),
    ({"steps": [{"train": {}}, {"export": {}}, {"quantize": {}}]}, "'export' only as the last"),
    ({"steps": [{"train": {"epochs": 0}}]}, "epochs"),
    ({"steps": [{"train": {}}, {"prune": {"sparsity": 2}}]}, "sparsity"),
    ({"steps": [{"train": {}}, {"quantize": {"method": "magic"}}]}, "method"),
    ({"model": "resnet9000", "steps": [{"train": {}}]}, "built-in family"),
    ({"steps": [{"train": {}}], "parity": {"tolerance": 1}}, "parity.tolerance"),
    ({"steps": [{"train": {}}], "oven": 200}, "oven"),
])
def test_recipe_validation(values, match):
    with pytest.raises(InvalidParameterError, match=match):
        Recipe.from_dict(values)


def test_example_recipes_parse():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("examples/recipe_*.yaml")):
        recipe = Recipe.load(path)
        assert recipe.steps[0].kind == "train" and recipe.steps[-1].kind == "export"
        assert Recipe.from_yaml(recipe.to_yaml()) == recipe


QUICK = {"name": "quick", "model": "cnn", "data": "digits",
         "steps": [{"train": {"epochs": 1}}, {"quantize": {"method": "ort-static-int8"}},
                   {"export": {}}]}


def test_recipe_runs_steps_with_parity_and_replays_from_lineage(tmp_path):
    from core.artifacts import load_model
    from core.measure import evaluate
    from core.runs import data_from_report

    out = tmp_path / "recipe"
    result = run_recipe(Recipe.from_dict(QUICK), out_dir=out, measure_options=FAST)
    steps = result.report["recipe"]["steps"]
    assert [s["kind"] for s in steps] == ["train", "quantize", "export"]
    assert steps[0]["parity"]["kind"] == "onnxruntime-vs-torch" and steps[0]["parity"]["ok"]
    assert steps[0]["parity"]["max_abs_diff"] < 1e-3
    assert steps[1]["parity"]["top1_agreement"] >= 0.95
    assert steps[2]["parity"]["top1_agreement"] == 1.0  # export copies the INT8 model
    quant = json.loads((out / steps[1]["run_dir"] / "report.json").read_text())
    assert quant["parent"] == steps[0]["run_id"]
    assert (out / "bundle.zip").is_file() and (out / "model.onnx").is_file()
    data = data_from_report(result.report)
    assert evaluate(load_model(out).model, data, "test").accuracy == pytest.approx(
        result.report["result"]["accuracy"], abs=1e-6)
    # Save as recipe: from the recipe run, and from the quantized step's lineage.
    assert recipe_from_lineage(out) == Recipe.from_dict(QUICK)
    again = recipe_from_lineage(out / steps[1]["run_dir"])
    assert [s.kind for s in again.steps] == ["train", "quantize"]
    assert again.steps[0].options["epochs"] == 1


def test_recipe_stops_when_parity_fails(tmp_path, monkeypatch):
    import torch

    import core.recipes._run as run_mod
    from core.artifacts import export_onnx
    from core.models import build_model

    real = run_mod._run_step
    ran: list[str] = []

    def tampering(step, index, source, recipe, data, out_dir, cb, mopts):
        ran.append(step.kind)
        result = real(step, index, source, recipe, data, out_dir, cb, mopts)
        if step.kind == "train":  # swap in the ONNX of an untrained twin
            spec = json.loads((out_dir / "model.json").read_text())
            torch.manual_seed(123)
            twin = build_model(spec["family"], **spec["kwargs"]).eval()
            export_onnx(twin, out_dir / "model.onnx", torch.randn(1, *twin.input_shape))
        return result

    monkeypatch.setattr(run_mod, "_run_step", tampering)
    with pytest.raises(ParityError) as info:
        run_recipe(Recipe.from_dict(QUICK), out_dir=tmp_path / "r", measure_options=FAST)
    text = str(info.value)
    assert "after step 1 (train)" in text and "before step 2 (quantize)" in text
    assert "onnxruntime vs torch" in text and "max |Δ|" in text
    assert ran == ["train"]  # the quantize step never ran
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_run_cli_and_api_style_recipe_refuses_paths(tmp_path):
    from core.cli import run

    with pytest.raises(InvalidParameterError, match="server paths"):
        Recipe.from_dict({"model": "/tmp/x", "steps": [{"prune": {}}]}, allow_paths=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [{train: {epochs: -1}}]\n")
    errors: list[str] = []
    assert run(["run", str(bad), "--out", str(tmp_path / "o")], err=errors.append) == 2
    assert "epochs" in errors[0]
