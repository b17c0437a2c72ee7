"""Distillation: a contract suite over every method, transfer sets, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.artifacts import load_model
from core.distillation import (
    DistillConfig,
    build_transfer_set,
    distill,
    read_unlabelled,
    scaled_spec,
)
from core.errors import CancelledError, InvalidParameterError, UnsupportedModelError
from core.measure import evaluate, ort_session, predict_logits
from core.models import build_model, model_for_data
from core.registry import list_methods

FAST = {"budget_s": 0.02, "memory": False}
METHODS = list_methods("distillation")


@pytest.fixture(scope="module")
def tiny(digits):
    """Digits with a 400-row train split (the test split is kept whole): fast runs."""
    import dataclasses

    return dataclasses.replace(digits, X_train=digits.X_train[:400], y_train=digits.y_train[:400],
                               X_val=digits.X_val[:80], y_val=digits.y_val[:80])


def _cfg(method: str = "soft-target", **kw) -> DistillConfig:
    return DistillConfig(method=method, epochs=kw.pop("epochs", 1), **kw)


def test_every_issue_method_is_registered():
    assert set(METHODS) == {"soft-target", "feature", "attention", "relational", "self",
                            "multi-teacher"}


@pytest.mark.parametrize("method", METHODS)
def test_contract_every_method(method, baseline_dir, tiny, tmp_path):
    digits = tiny
    teachers = (str(baseline_dir),) if method == "multi-teacher" else ()
    out = tmp_path / method
    cfg = _cfg(method, epochs=2 if method == "self" else 1, teachers=teachers)
    res = distill(baseline_dir, tiny, cfg, out_dir=out, measure_options=FAST)
    rep = res.report
    assert res.run_dir == out and json.loads((out / "report.json").read_text()) == rep
    assert rep["operation"] == "distill" and rep["method"] == method
    assert rep["parent"] == baseline_dir.name
    info = rep["distillation"]
    # the label-only twin was trained, measured and saved
    lo = info["label_only"]
    assert lo["params"] == info["student"]["params"] and len(lo["history"]) == lo["epochs"]
    assert (out / "label_only" / "model.safetensors").is_file()
    lo_model = load_model(out / "label_only").model
    assert evaluate(lo_model, digits, "test").accuracy == pytest.approx(lo["accuracy"])
    assert info["gain"] == pytest.approx(rep["result"]["accuracy"] - lo["accuracy"])
    # the student loads, is smaller than the teacher, and its figures re-measure
    loaded = load_model(out)
    assert loaded.kind == "builtin"
    assert rep["result"]["params"] < rep["baseline"]["params"]
    assert evaluate(loaded.model, digits, "test").accuracy == pytest.approx(
        rep["result"]["accuracy"])
    onnx_pred = predict_logits(ort_session(out / "model.onnx"), digits.X_test).argmax(1)
    torch_pred = predict_logits(loaded.model, digits.X_test).argmax(1)
    assert (onnx_pred == torch_pred).mean() > 0.99
    assert set(rep["baseline"]["latency_ms"]) == {"1", "64"}
    assert info["kd_student"]["history"] and info["method"]["temperature"] == 4.0
    if method == "self":
        assert info["method"]["snapshots"] >= 1
    if method == "multi-teacher":
        assert info["method"]["teachers"] == 2


def test_scaled_student_specs():
    cnn = scaled_spec(build_model("cnn", channels=[16, 32], hidden_dims=[20]).spec(),
                      width=0.5, depth=0.5)
    assert cnn.kwargs["channels"] == [8] and cnn.kwargs["hidden_dims"] == [10]
    mlp = scaled_spec(build_model("mlp", input_dim=9, hidden_dims=[64, 32]).spec(), width=0.25)
    assert mlp.kwargs["hidden_dims"] == [16, 8]
    vit = scaled_spec(build_model("vit", depth=2, dim=32, heads=4, mlp_dim=64).spec(),
                      width=0.5, depth=0.5)
    assert (vit.kwargs["dim"], vit.kwargs["heads"], vit.kwargs["mlp_dim"],
            vit.kwargs["depth"]) == (16, [2], [32], 1)
    with pytest.raises(InvalidParameterError, match="zero-width"):
        scaled_spec(build_model("cnn").spec(), width=0.02)


def test_label_fraction_transfer_set(baseline_dir, digits, tiny, tmp_path):
    ts = build_transfer_set(digits, label_fraction=0.1, seed=3)
    n = len(digits.y_train)
    assert len(ts.labels) == n and 0.08 * n < ts.labelled.sum() < 0.12 * n
    assert set(np.unique(ts.labels[ts.labelled])) == set(range(10))  # every class kept
    assert (ts.labels[ts.labelled] == digits.y_train[ts.labelled]).all()
    res = distill(baseline_dir, tiny, _cfg(label_fraction=0.1, seed=3), out_dir=tmp_path / "kd",
                  measure_options=FAST)
    summary = res.report["distillation"]["transfer_set"]
    expected = build_transfer_set(tiny, label_fraction=0.1, seed=3)
    assert summary["labelled"] == expected.labelled.sum()
    assert summary["labelled"] + summary["unlabelled"] == len(tiny.y_train)
    info = res.report["distillation"]
    lo, kd = info["label_only"], info["kd_student"]
    assert 0 < lo["accuracy"] <= 1 and info["budget"] == "steps"
    # same budget: the label-only twin gets as many optimiser steps (more epochs)
    assert lo["epochs"] > kd["epochs"] == 1 and lo["steps"] >= kd["steps"]
    assert len(lo["history"]) == lo["epochs"]
    assert "unlabelled" in summary["source"]


def test_unlabelled_npz_and_csv(baseline_dir, digits, tiny, tmp_path):
    from sklearn.datasets import load_digits

    raw = load_digits().images[:50]  # raw 0..16 pixels, (50, 8, 8)
    npz = tmp_path / "more.npz"
    np.savez(npz, X=raw)
    X = read_unlabelled(npz, digits)
    assert X.shape == (50, 1, 8, 8) and np.allclose(X, raw[:, None] / 16.0)
    res = distill(baseline_dir, tiny, _cfg(unlabelled=str(npz)), out_dir=tmp_path / "kd",
                  measure_options=FAST)
    summary = res.report["distillation"]["transfer_set"]
    assert summary["unlabelled"] == 50 and summary["labelled"] == len(tiny.y_train)

    from core.data import load_dataset

    wine = load_dataset("wine")
    from sklearn.datasets import load_wine

    raw_w = load_wine().data[:5]
    csv = tmp_path / "more.csv"
    header = ",".join(f"f{i}" for i in range(raw_w.shape[1]))
    csv.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in raw_w))
    Xw = read_unlabelled(csv, wine)
    prep = wine.preprocessing
    assert np.allclose(Xw, (raw_w - np.array(prep["mean"])) / np.array(prep["std"]), atol=1e-5)
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((3, 5)))
    with pytest.raises(Exception, match="shape"):
        read_unlabelled(bad, digits)


def test_a_quantized_variant_teaches_a_student_scaled_from_its_fp32_model(baseline_dir, tiny,
                                                                          tmp_path):
    from core.quantization import quantize

    q8 = tmp_path / "q8"
    quantize(baseline_dir, None, "ort-dynamic-int8", out_dir=q8, measure_options=FAST)
    res = distill(q8, tiny, _cfg(width=0.5), out_dir=tmp_path / "s", measure_options=FAST)
    student = json.loads((tmp_path / "s" / "model.json").read_text())
    teacher = json.loads((baseline_dir / "model.json").read_text())
    assert student["family"] == teacher["family"] == "cnn"
    assert res.report["distillation"]["teacher"]["kind"] == "onnx"


def test_python_api_modules_onnx_teacher_and_vit_attention(baseline_dir, tiny, tmp_path):
    from core.data import load_dataset

    # an ONNX teacher: soft targets from its logits; the student family is named
    res = distill(baseline_dir / "model.onnx", tiny, _cfg(family="cnn"),
                  out_dir=tmp_path / "onnx", measure_options=FAST)
    assert res.report["distillation"]["teacher"]["kind"] == "onnx"
    assert res.report["result"]["params"] < res.report["baseline"]["params"]
    with pytest.raises(UnsupportedModelError, match="torch model"):
        distill(baseline_dir / "model.onnx", tiny, _cfg("feature", family="cnn"),
                out_dir=tmp_path / "no")
    # modules from Python: a vit teacher, attention transfer on attention matrices
    vit = model_for_data("vit", tiny.input_shape, tiny.num_classes, dim=16, depth=1, heads=2)
    res = distill(vit, tiny, _cfg("attention", width=0.5), out_dir=tmp_path / "vit",
                  measure_options=FAST)
    assert res.report["distillation"]["method"]["kind"] == "vit"
    assert load_model(tmp_path / "vit").model.spec().kwargs["dim"] == 8
    # an mlp on tabular data with a user-given student and the relational method
    import dataclasses

    health = load_dataset("health")
    health = dataclasses.replace(health, X_train=health.X_train[:300],
                                 y_train=health.y_train[:300])
    mlp = model_for_data("mlp", health.input_shape, health.num_classes)
    student = build_model("mlp", input_dim=9, hidden_dims=[8], num_classes=4)
    res = distill(mlp, health, _cfg("relational"), student=student, out_dir=tmp_path / "mlp",
                  measure_options=FAST)
    assert res.report["distillation"]["student"]["origin"].startswith("given")
    assert res.report["result"]["params"] == sum(p.numel() for p in student.parameters())
    with pytest.raises(UnsupportedModelError, match="Attention transfer"):
        distill(mlp, health, _cfg("attention"), out_dir=tmp_path / "no")


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -2.0}, "temperature"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": 1.5}, "alpha"),
    ({"label_fraction": 0.0}, "label_fraction"),
    ({"method": "magic"}, "method"),
    ({"budget": "time"}, "budget"),
    ({"width": 0.0}, "width"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        DistillConfig(**kwargs)


def test_bad_students_and_cancel_leave_nothing(baseline_dir, tiny, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InvalidParameterError, match="zero-width"):
        distill(baseline_dir, None, _cfg(width=0.03), out_dir=out)
    wrong = build_model("cnn", input_shape=[1, 8, 8], num_classes=5)
    with pytest.raises(InvalidParameterError, match="10 output classes"):
        distill(baseline_dir, None, _cfg(), student=wrong, out_dir=out)
    with pytest.raises(InvalidParameterError, match="teacher"):
        distill(baseline_dir, "wine", _cfg(), out_dir=out)
    from core.callbacks import Callbacks

    cb = Callbacks()
    cb.on_metrics = lambda d: cb.cancel.cancel()  # stop after the first epoch
    with pytest.raises(CancelledError):
        distill(baseline_dir, tiny, _cfg(epochs=3), out_dir=out, callbacks=cb)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_cli_distill(baseline_dir, tmp_path, capsys, monkeypatch):
    import core.distillation
    from core.cli import run

    real = core.distillation.distill
    monkeypatch.setattr(core.distillation, "distill",  # quick timing in tests
                        lambda *a, **kw: real(*a, **{**kw, "measure_options": FAST}))

    out = tmp_path / "cli"
    code = run(["distill", "--teacher", str(baseline_dir), "--width", "0.5", "--epochs", "1",
                "--label-fraction", "0.5", "--out", str(out)])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["config"]["label_fraction"] == 0.5 and "label_only" in rep["distillation"]
    assert "gain" in capsys.readouterr().out
    errors: list[str] = []
    assert run(["distill", "--teacher", str(baseline_dir), "--temperature", "0", "--out",
                str(tmp_path / "x")], err=errors.append) == 2
    assert "temperature" in errors[-1] and not (tmp_path / "x").exists()
