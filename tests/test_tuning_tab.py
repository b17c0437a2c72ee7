"""The Tuning tab through gradio_client: run a study live, then train its best trial."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

SPACE = """
lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
width: [4, 8]
"""


def test_tab_handlers_build_configs_and_rows():
    from core.errors import InvalidParameterError
    from studio.tabs.tuning import make_tune_config, space_text, table_row

    assert "depth" in yaml.safe_load(space_text("architecture", "cnn"))
    cfg = make_tune_config("architecture", "mlp", "wine", SPACE, "nsga2", "median",
                           ["accuracy", "latency"], 4, None, 2, 1.5, 0, "", "sqlite:///x.db")
    assert cfg.objectives == ("accuracy", "latency") and cfg.max_latency_ms == 1.5
    assert cfg.max_size_bytes is None
    sized = make_tune_config("architecture", "mlp", "wine", SPACE, "nsga2", "median",
                             ["accuracy", "size"], 4, None, 2, 0, 0, "", "sqlite:///x.db", 8)
    assert sized.max_size_bytes == 8192 and sized.max_latency_ms is None
    with pytest.raises(InvalidParameterError, match="space"):
        make_tune_config("hyperparameters", "mlp", "wine", "", "tpe", "none", ["accuracy"], 4,
                         None, 2, None, 0, "", "sqlite:///x.db")
    row = table_row({"number": 3, "state": "complete", "values": {"accuracy": 0.91234},
                     "params": {"lr": 0.0123456}, "epochs_run": 2, "epochs_planned": 2,
                     "size_bytes": 2048})
    assert row["accuracy"] == 0.9123 and row["size (KB)"] == 2.0 and "lr=0.01235" in row["params"]


def test_tuning_tab_through_gradio_client(client, studio_server):
    _, ctx = studio_server
    job = client.submit("hyperparameters", "mlp", "wine", SPACE, "random", "median",
                        ["accuracy", "size"], 3, None, 1, None, 0, "tab-study",
                        api_name="/tune")
    outputs = job.outputs()
    final = job.result()
    status, table, history, parallel, importance, pareto, files = final
    assert "tab-study" in status and "3 complete" in status
    assert len(table["data"]) == 3
    assert pareto is not None  # two objectives → Pareto front
    # the table grew while the study ran (live updates)
    sizes = [len(o[1]["data"]) for o in outputs if isinstance(o[1], dict) and "data" in o[1]]
    assert 1 in sizes and 3 in sizes
    names = sorted(Path(f).name for f in files)
    assert names == ["study.yaml", "trials.csv"]
    csv_rows = list(csv.DictReader(open(next(f for f in files if f.endswith(".csv")))))
    assert len(csv_rows) == 3
    # Train best → a variant listed in the session (Comparison reads these)
    text, exported = client.predict("best", api_name="/tune_train_best")
    assert "Variant" in text and any(str(f).endswith(".zip") for f in exported)
    runs = [p for p in ctx.root.glob("sessions/*/tune-*") if (p / "report.json").is_file()]
    reports = [json.loads((p / "report.json").read_text()) for p in runs]
    assert any(r.get("config", {}).get("study") == "tab-study" for r in reports)
    # The same study name continues the study (nothing lost, nothing re-run).
    again = client.predict("hyperparameters", "mlp", "wine", SPACE, "random", "median",
                           ["accuracy", "size"], 3, None, 1, None, 0, "tab-study",
                           api_name="/tune")
    assert "resumed" in again[0] and len(again[1]["data"]) == 3


def test_recipe_study_compresses_the_sessions_own_baseline(client, studio_server):
    client.predict("wine", "mlp", None, "label", 2, 0.01, api_name="/train_baseline")
    space = ("sparsity: {type: float, low: 0.2, high: 0.5}\n"
             "pruning_method: [structured-l2]\nquantization_method: [none]\n")
    status, *_ = client.predict("recipe", "mlp", "wine", space, "random", "none",
                                ["accuracy"], 2, None, 1, None, 0, "", api_name="/tune")
    assert "2 complete" in status
    _, ctx = studio_server
    found = ctx.root.glob("sessions/*/studies/*/report.json")
    studies = [json.loads(p.read_text()) for p in found]
    recipe = [r for r in studies if r["config"]["target"] == "recipe"]
    assert recipe and recipe[-1]["parent"].startswith("train-")  # the session's baseline


def test_trial0_is_the_baseline_and_the_gain_is_said(tmp_path):
    """Trial 0 of a hyper-parameter study repeats the baseline's settings (same weights: the
    same test accuracy), train-best retrains a trial to the same model, and the headline says
    what it gained against the baseline."""
    from core.runs import train_baseline
    from core.training import TrainConfig
    from core.tuning import default_space, train_best, tune
    from studio.tabs.tuning import (
        baseline_params,
        enqueue_trial0,
        gain_text,
        make_tune_config,
        space_text,
    )

    space = default_space("hyperparameters", "cnn")
    assert baseline_params(space, "cnn", None) == {
        "lr": 0.01, "weight_decay": 0.0, "label_smoothing": 0.0, "dropout": 0.0}
    assert baseline_params(space, "cnn", {"config": {"model": "cnn", "lr": 0.5}}) is None
    assert baseline_params({"width": [8, 16]}, "cnn", {"config": {
        "model": "cnn", "model_kwargs": {"channels": [16, 32]}}}) == {"width": 16}

    base = tmp_path / "base"
    report = train_baseline("mlp", "wine", out_dir=base, config=TrainConfig(epochs=2),
                            measure_options={"budget_s": 0.02, "memory": False}).report
    cfg = make_tune_config("hyperparameters", "mlp", "wine", space_text("hyperparameters",
                           "mlp"), "random", "none", ["accuracy"], 2, None, 2, None, 0, "t0",
                           f"sqlite:///{tmp_path / 's.db'}")
    out = tmp_path / "study"
    enqueue_trial0(cfg, out, baseline_params(cfg.space, "mlp", report))
    rows = tune(None, None, cfg, out_dir=out).report["study"]["trials"]
    assert rows[0]["test_accuracy"] == report["result"]["accuracy"]
    best = train_best(out, out_dir=tmp_path / "best", trial=1, baseline=base,
                      measure_options={"budget_s": 0.02, "memory": False}).report
    assert best["result"]["accuracy"] == pytest.approx(rows[1]["test_accuracy"])
    delta = 100 * (best["result"]["accuracy"] - report["result"]["accuracy"])
    assert f"{delta:+.2f} pt" in gain_text(best, "MLP on wine") or delta == 0
    same = {"result": {"accuracy": 0.9}, "baseline": {"accuracy": 0.9}}
    assert "Same accuracy as B" in gain_text(same, "B")
    assert "+1.00 pt accuracy over B" in gain_text(
        {"result": {"accuracy": 0.91}, "baseline": {"accuracy": 0.9}}, "B")
