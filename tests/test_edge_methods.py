"""Issue 16's edge methods as studio methods: fusion and low-rank as recipe steps and tuning
dimensions, and the linear pruning schedule."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from torch import nn

from core.errors import InvalidParameterError
from tests.conftest import FAST_MEASURE


def test_linear_schedule_sparsity_at_given_epochs():
    from core.pruning import PruningConfig
    from core.pruning._config import linear_schedule

    assert [linear_schedule(0.6, 2, 8, e) for e in (0, 2, 3, 5, 8, 12)] == \
        pytest.approx([0.0, 0.0, 0.1, 0.3, 0.6, 0.6])
    cfg = PruningConfig(sparsity=0.6, schedule="linear", start_epoch=2, end_epoch=8,
                        frequency=2)
    assert cfg.pruning_epochs() == [4, 6, 8]
    assert cfg.targets() == pytest.approx([0.2, 0.4, 0.6])
    with pytest.raises(InvalidParameterError, match="end_epoch"):
        PruningConfig(schedule="linear", start_epoch=5, end_epoch=5)


def test_linear_schedule_prunes_step_by_step(baseline_dir, digits, tmp_path):
    from core.pruning import PruningConfig, prune

    run = prune(baseline_dir, digits,
                PruningConfig(method="l1-unstructured", sparsity=0.6, schedule="linear",
                              start_epoch=0, end_epoch=2, finetune_epochs=0),
                out_dir=tmp_path / "p", measure_options=FAST_MEASURE)
    history = run.report["pruning"]["history"]
    assert [round(h["sparsity"], 3) for h in history] == [0.0, 0.3, 0.6]
    layers = run.report["pruning"]["layers"]
    weights = sum(r["params_after"] for r in layers)
    nonzero = sum(r["nonzero_after"] for r in layers)
    assert 1 - nonzero / weights == pytest.approx(0.6, abs=0.02)


def test_fuse_and_factorize_recipe_steps_run(baseline_dir, digits, tmp_path):
    from core.recipes import Recipe, run_recipe

    recipe = Recipe.from_dict({"name": "edge", "model": str(baseline_dir), "steps": [
        {"fuse": {}}, {"factorize": {"rank_ratio": 0.5, "finetune_epochs": 1}}]})
    run = run_recipe(recipe, out_dir=tmp_path / "r", data=digits,
                     measure_options=FAST_MEASURE)
    steps = run.report["recipe"]["steps"]
    assert [s["kind"] for s in steps] == ["fuse", "factorize"]
    reports = [json.loads((tmp_path / "r" / s["run_dir"] / "report.json").read_text())
               for s in steps]
    assert reports[0]["fusion"]["nodes_after"] < reports[0]["fusion"]["nodes_before"]
    for info in reports[1]["lowrank"]["layers"]:  # the fused ONNX, converted, factorized
        assert info["rank"] == -(-info["full_rank"] // 2)  # ⌈0.5 · full rank⌉
    # low-rank is followed by a fine-tune that keeps its best validated state
    assert reports[1]["lowrank"]["finetune"]["val_accuracy_best"] >= \
        reports[1]["lowrank"]["finetune"]["val_accuracy_start"]
    assert run.report["result"]["accuracy"] > 0.5
    with pytest.raises(InvalidParameterError, match="patterns"):
        Recipe.from_dict({"model": "x", "steps": [{"fuse": {"patterns": ["conv-gelu"]}}]})


def test_fusion_gives_fewer_onnx_nodes_and_the_same_outputs(tmp_path):
    from core.fusion import fuse_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    net[1].running_mean.uniform_(-1, 1)
    fused, info = fuse_model(net, ["conv-bn-relu"])
    x = torch.randn(8, 1, 8, 8)
    assert torch.allclose(net(x), fused(x), atol=1e-5)
    assert info.nodes_after < info.nodes_before

    def onnx_nodes(model: nn.Module, name: str) -> int:
        torch.onnx.export(model, (x,), str(tmp_path / name), dynamo=False,
                          do_constant_folding=False)
        return len(onnx.load(str(tmp_path / name)).graph.node)

    assert onnx_nodes(fused, "f.onnx") < onnx_nodes(net, "n.onnx")


def test_tune_recipe_space_takes_fusion_and_rank_ratio():
    from core.tuning import TuneConfig

    cfg = TuneConfig.from_dict({"target": "recipe", "model": "cnn", "data": "digits",
                                "space": {"fusion_method": ["none", "fx-fuse"],
                                          "rank_ratio": ["none", 0.5]}})
    assert set(cfg.search_space().names) == {"fusion_method", "rank_ratio"}
    with pytest.raises(InvalidParameterError, match="rank_ratio"):
        TuneConfig.from_dict({"target": "recipe", "space": {"rank_ratio": [1.5]}})
    with pytest.raises(InvalidParameterError, match="fusion_method"):
        TuneConfig.from_dict({"target": "recipe", "space": {"fusion_method": ["tvm"]}})
