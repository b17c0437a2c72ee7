"""Auto-optimizer: hardware-aware proposals, the pick within tolerance, the explanation."""

from __future__ import annotations

import json

import pytest

from core.auto import AutoConfig, choose, propose
from core.errors import InvalidParameterError

FAST = {"budget_s": 0.02, "memory": False}


def test_proposals_follow_the_hardware():
    plain = {n.name: n for n in propose({"isa": ["avx2"], "cuda": False}, family="cnn",
                                        finetune_epochs=2)}
    assert plain["ort-fp16"].skipped and "FP16" in plain["ort-fp16"].skipped
    assert plain["torch-bf16"].skipped
    assert not plain["prune50-ft-int8"].skipped
    assert "without VNNI" in plain["ort-static-int8"].why
    rich = {n.name: n for n in propose({"isa": ["avx512_vnni", "avx512_fp16", "amx_bf16"]},
                                       family="cnn", finetune_epochs=2)}
    assert not rich["ort-fp16"].skipped and not rich["torch-bf16"].skipped
    assert "VNNI" in rich["ort-static-int8"].why
    gpu = {n.name: n for n in propose({"isa": [], "cuda": True}, family=None,
                                      finetune_epochs=2)}
    assert "measured on the CPU" in gpu["ort-fp16"].skipped  # timings are CPU timings
    assert gpu["distill50-int8"].skipped
    only = propose({"isa": []}, family="cnn", finetune_epochs=1, only=("ort-fp32",))
    assert [c.name for c in only] == ["ort-fp32"]
    with pytest.raises(InvalidParameterError, match="target"):
        AutoConfig(target="fastest")
    with pytest.raises(InvalidParameterError, match="candidates"):
        AutoConfig(candidates=("magic",))


def _row(name, p50, size, val, pareto=True, **kw):
    return {"name": name, "p50_b64": p50, "p50_b1": p50 / 10, "size_bytes": size,
            "val_accuracy": val, "accuracy": val, "val_drop": 0.95 - val, "ok": True,
            "pareto": pareto, "speedup_b64": 1.0 / p50, "size_reduction": 1000 / size,
            "accuracy_delta": val - 0.95, **kw}


def test_choose_respects_target_and_tolerance():
    rows = [_row("baseline", 1.0, 1000, 0.95), _row("fast", 0.1, 300, 0.945),
            _row("tiny", 0.3, 50, 0.93), _row("fastest-but-bad", 0.05, 200, 0.80),
            _row("accurate", 0.5, 900, 0.96), _row("dominated", 0.2, 400, 0.94, pareto=False)]
    assert choose(rows, "speed", 0.01)["name"] == "fast"
    assert choose(rows, "speed", 0.2)["name"] == "fastest-but-bad"
    assert choose(rows, "size", 0.01)["name"] == "fast"
    assert choose(rows, "size", 0.03)["name"] == "tiny"
    assert choose(rows, "accuracy", 0.01)["name"] == "accurate"
    assert choose(rows, "balanced", 0.03)["name"] == "tiny"
    assert choose(rows, "speed", 0.0)["name"] == "accurate"  # only no-loss variants


def test_a_variant_outside_the_tolerance_does_not_hide_one_inside_it():
    # "pruned" lost 5 points on validation but scored higher on test, smaller and faster:
    # it dominates "int8" on the test Pareto front, yet it is not a candidate for the pick.
    rows = [_row("baseline", 3.0, 1000, 0.95, accuracy=0.97),
            _row("int8", 1.5, 250, 0.95, accuracy=0.94),
            _row("pruned", 1.0, 100, 0.90, accuracy=0.96)]
    assert choose(rows, "speed", 0.01)["name"] == "int8"
    assert choose(rows, "size", 0.01)["name"] == "int8"
    assert choose(rows, "speed", 0.06)["name"] == "pruned"


def test_auto_picks_within_tolerance_and_explains(baseline_dir, tmp_path):
    from core.artifacts import load_model
    from core.auto import auto
    from core.measure import evaluate
    from core.runs import data_from_report

    cfg = AutoConfig(target="speed", tolerance=0.02, finetune_epochs=1, refine=1,
                     candidates=("ort-fp32", "ort-static-int8", "prune50-ft", "ort-fp16"))
    result = auto(baseline_dir, None, cfg, out_dir=tmp_path / "auto", measure_options=FAST)
    out = tmp_path / "auto"
    report = json.loads((out / "report.json").read_text())
    info = report["auto"]
    table = {c["name"]: c for c in info["candidates"]}
    assert set(table) >= {"baseline", "ort-fp32", "ort-static-int8"}
    # One round of sparsity search added a milder or stronger pruning (INT8 and ORT forms).
    searched = {n for n in table if n.startswith("prune") and n != "prune50-ft"}
    assert len(searched) == 2 and all(n[5:7] in ("25", "70") for n in searched)
    win = table[info["winner"]]
    # Within the tolerance, on the Pareto front, the fastest such variant at batch 64.
    assert win["val_drop"] <= cfg.tolerance + 1e-12
    eligible = [c for c in table.values() if c["val_drop"] <= cfg.tolerance + 1e-12]
    pool = [c for c in eligible if c["pareto"]] or eligible
    assert win["p50_b64"] == min(c["p50_b64"] for c in pool)
    # Where the baseline spends its time, from the layer profiler, named in the explanation.
    hot = info["where_time_goes"]["layers"]
    assert hot and all(h["share"] >= 0.10 for h in hot)
    assert hot[0]["layer"] in info["explanation"]
    assert info["winner"] in info["explanation"] and "faster at batch 64" in \
        info["explanation"] or info["winner"] == "baseline"
    losers = {entry["name"]: entry["why_lost"] for entry in info["losers"]}
    # FP16 is measured only on a CPU with FP16 arithmetic (AVX512-FP16/AMX-FP16), else
    # skipped with its reason: every candidate is measured or skipped, never both
    skipped = {name for name, why in losers.items() if why.startswith("skipped:")}
    assert skipped <= {"ort-fp16"} and not skipped & set(table)
    assert "ort-fp16" in set(table) | skipped
    assert set(losers) == (set(table) | skipped) - {info["winner"]}
    assert all(text for text in losers.values())
    # The output folder is itself a variant: its model reproduces the reported accuracy.
    data = data_from_report(report)
    assert evaluate(load_model(out).model, data, "test").accuracy == pytest.approx(
        report["result"]["accuracy"], abs=1e-6)
    assert (out / "comparison" / "report.html").is_file()
    assert "steps" in (out / "recipe.yaml").read_text()
    assert result.report["method"] == info["winner"]
    # Another target, same measured table: the smallest eligible Pareto variant.
    from core.auto import reselect

    small = reselect(report, "size")
    assert small["row"]["size_bytes"] == min(c["size_bytes"] for c in pool)
    assert small["winner"] in small["explanation"] or small["winner"] == "baseline"
    # Validation drops are measured, relative to the baseline's own validation accuracy.
    base_val = evaluate(load_model(baseline_dir).model, data, "val").accuracy
    assert table["baseline"]["val_accuracy"] == pytest.approx(base_val)


def test_auto_optimizer_facade_with_loaders(tmp_path):
    import torch

    from core.auto import AutoOptimizer
    from core.data import load_dataset
    from core.models import model_for_data
    from core.training import TrainConfig, train

    data = load_dataset("wine")
    net = model_for_data("mlp", data.input_shape, data.num_classes, hidden_dims=[16])
    train(net, data, TrainConfig(epochs=3))

    def loader(X, y):
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y)),
            batch_size=32)

    opt = AutoOptimizer(target_metric="size", tolerance=0.05, candidates=("ort-fp32",))
    result = opt.optimize_model(net, loader(data.X_train, data.y_train),
                                loader(data.X_test, data.y_test), out_dir=tmp_path / "a",
                                measure_options=FAST)
    assert result.report["operation"] == "auto"
    assert result.report["auto"]["winner"] in ("baseline", "ort-fp32")


def test_sparsity_search_bisects_the_tolerance_bracket():
    from core.auto._auto import _next_sparsity

    def run(sp, drop):
        return {"steps": [{"prune": {"sparsity": sp}}], "val_drop": drop}

    tol = 0.005
    assert _next_sparsity([], tol) is None
    assert _next_sparsity([run(0.5, 0.0), run(0.75, 0.02)], tol) == pytest.approx(0.62, abs=0.01)
    assert _next_sparsity([run(0.5, 0.02), run(0.75, 0.03)], tol) == 0.25
    assert _next_sparsity([run(0.5, 0.0), run(0.75, 0.0)], tol) == pytest.approx(0.82, abs=0.01)
    # A bracket narrower than 8 points is not split again.
    assert _next_sparsity([run(0.62, 0.0), run(0.69, 0.02)], tol) is None
    # Failed runs (no val_drop) and non-pruning candidates are ignored.
    assert _next_sparsity([{"steps": [{"export": {}}], "val_drop": 0.0},
                           {"steps": [{"prune": {"sparsity": 0.5}}]}], tol) is None


def test_loser_explanations_name_the_measured_ratio():
    from core.auto._auto import _decide
    from core.auto._candidates import EXPORT, STATIC_INT8

    rows = [_row("baseline", 1.0, 1000, 0.95, steps=None),
            _row("ort-fp32", 0.2, 990, 0.95, steps=[EXPORT]),
            _row("ort-static-int8", 0.38, 260, 0.95, steps=[STATIC_INT8]),
            _row("too-lossy", 0.1, 100, 0.90, steps=[{"prune": {"sparsity": 0.9}}])]
    win, text, losers = _decide(rows, [{"name": "ort-fp16", "skipped": "no FP16 here"}],
                                "speed", 0.01)
    why = {entry["name"]: entry["why_lost"] for entry in losers}
    assert win["name"] == "ort-fp32" and "5.00× faster at batch 64" in text
    assert "1.90× slower than ort-fp32" in why["ort-static-int8"]
    assert "lost 5.00 pt of validation accuracy" in why["too-lossy"]
    assert why["ort-fp16"] == "skipped: no FP16 here."


def test_auto_cli_refuses_bad_options(tmp_path):
    from core.cli import run

    errors: list[str] = []
    assert run(["auto", "--tolerance", "3", "--out", str(tmp_path / "a")],
               err=errors.append) == 2
    assert "tolerance" in errors[0] and not (tmp_path / "a").exists()
    assert run(["auto", "--candidates", "magic", "--out", str(tmp_path / "a")],
               err=errors.append) == 2
    assert "candidates" in errors[1]
