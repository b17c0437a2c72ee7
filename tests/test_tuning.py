"""Tuning: spaces as data, configs, each sampler/pruner, the study engine, NAS constraints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from core.errors import InvalidParameterError, StudioError

FAST = {"budget_s": 0.02, "memory": False, "threads": 1}
LR = {"type": "float", "low": 1.0e-3, "high": 0.1, "log": True}


@pytest.fixture(scope="module")
def wine():
    from core.data import load_dataset

    return load_dataset("wine")


# --- spaces and configs ------------------------------------------------------------------
def test_space_kinds_and_shorthand():
    from core.tuning import parse_space

    space = parse_space("""
lr: {type: float, low: 1e-4, high: 0.1, log: true}
wd: {type: log-float, low: 1.0e-6, high: 1.0e-2}
epochs: {type: int, low: 1, high: 4}
hidden_dims: [[32], [64, 32]]
optimizer: {type: categorical, choices: [adam, sgd]}
""")
    kinds = {d.name: d.kind for d in space.dimensions}
    assert kinds == {"lr": "log-float", "wd": "log-float", "epochs": "int",
                     "hidden_dims": "categorical", "optimizer": "categorical"}
    assert space["lr"].low == pytest.approx(1e-4)  # "1e-4" read by YAML as a string
    grid = space.grid(3)
    assert grid["epochs"] == [1, 2, 3, 4] and len(grid["lr"]) == 3
    assert space["hidden_dims"].decode(grid["hidden_dims"][1]) == [64, 32]
    assert parse_space(space.to_dict()).to_dict() == space.to_dict()


@pytest.mark.parametrize("spec, name", [
    ({}, "space"),
    ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "space.lr.low"),
    ({"lr": {"type": "log-float", "low": -1, "high": 0.1}}, "space.lr.low"),
    ({"lr": {"type": "float", "low": 0.5, "high": 0.1}}, "space.lr"),
    ({"lr": {"type": "gaussian", "low": 0, "high": 1}}, "space.lr.type"),
    ({"opt": {"type": "categorical", "choices": []}}, "space.opt.choices"),
    ({"n": {"type": "int", "low": 1.5, "high": 3}}, "space.n.low"),
])
def test_space_rejects_bad_input_clearly(spec, name):
    from core.tuning import parse_space

    with pytest.raises(InvalidParameterError) as err:
        parse_space(spec)
    assert err.value.name == name
    assert "must be" in str(err.value)


def test_config_validation_messages():
    from core.tuning import TuneConfig

    with pytest.raises(InvalidParameterError, match="'sampler'.*'bayes'"):
        TuneConfig(sampler="bayes")
    with pytest.raises(InvalidParameterError, match="objectives"):
        TuneConfig(objectives=("accuracy", "speed"))
    with pytest.raises(InvalidParameterError, match="multi-objective sampler"):
        TuneConfig(sampler="cmaes", objectives=("accuracy", "latency"))
    with pytest.raises(InvalidParameterError, match="space.kernel_size"):
        TuneConfig(model="mlp", space={"kernel_size": [3, 5]})
    with pytest.raises(InvalidParameterError, match="space.lr"):
        TuneConfig(target="recipe", space={"lr": LR})
    cfg = TuneConfig.from_yaml(TuneConfig(objectives=("accuracy", "size")).to_yaml())
    assert cfg.objectives == ("accuracy", "size") and cfg.directions == ["maximize", "minimize"]


def test_arch_keys_map_to_widths():
    from core.tuning import arch_kwargs

    assert arch_kwargs("cnn", {"depth": 3, "width": 8, "kernel_size": 5}) == {
        "channels": [8, 16, 32], "kernel_size": 5}
    assert arch_kwargs("mlp", {"depth": 2, "width": 64, "width_decay": 0.5}) == {
        "hidden_dims": [64, 32]}
    assert arch_kwargs("vit", {"dim": 32, "mlp_ratio": 2})["mlp_dim"] == 64


def test_samplers_are_registered():
    from core.registry import list_methods

    assert list_methods("tuning") == ["grid", "random", "tpe", "gp", "cmaes", "nsga2"]


# --- each sampler and pruner on a tiny objective ---------------------------------------------
@pytest.mark.parametrize("sampler", ["grid", "random", "tpe", "gp", "cmaes", "nsga2"])
def test_each_sampler_through_the_facade(sampler):
    from core.tuning import HyperparameterTuner

    space = {"x": {"type": "float", "low": -2.0, "high": 2.0},
             "k": {"type": "int", "low": 0, "high": 2}}
    tuner = HyperparameterTuner(lambda p: p, lambda m, p: {"score": -(m["x"] - 1) ** 2 - m["k"]},
                                space, metric="score", maximize=True, seed=1, grid_points=5)
    n = 6 if sampler == "gp" else 12  # GP fits are the slow part
    res = tuner.grid_search() if sampler == "grid" else tuner.optuna_search(n, sampler=sampler)
    assert res.sampler == sampler
    assert len(res.history) == (15 if sampler == "grid" else n)
    assert res.best_score == max(h["score"] for h in res.history)
    if sampler == "grid":
        assert res.best_params == {"x": 1.0, "k": 0} and res.best_score == 0.0
    # same seed, same search
    again = tuner.grid_search() if sampler == "grid" else tuner.optuna_search(n, sampler=sampler)
    assert [h["params"] for h in again.history] == [h["params"] for h in res.history] \
        or sampler == "grid"


def test_facade_random_search_and_default_space():
    from core.tuning import DEFAULT_PARAM_SPACE, HyperparameterTuner

    seen = []
    tuner = HyperparameterTuner(lambda p: p, lambda m, p: seen.append(p) or p["lr"])
    res = tuner.random_search(5)
    assert set(seen[0]) == set(DEFAULT_PARAM_SPACE) and len(res.history) == 5
    assert res.best_params["lr"] == max(p["lr"] for p in seen)


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_studio_trials_report_epochs_so_pruners_stop_them(pruner, tmp_path, wine):
    """Our objective reports validation accuracy per epoch: a pruner stops bad trials early and
    the report counts the epochs that saved (not a test of Optuna's pruners themselves)."""
    from core.tuning import TuneConfig, tune

    space = {"lr": {"type": "float", "low": 1e-6, "high": 0.3, "log": True}}
    options = {"n_startup_trials": 1, "n_warmup_steps": 0} if pruner == "median" else \
        {"min_resource": 1, "reduction_factor": 2}
    cfg = TuneConfig(data="wine", model="mlp", space=space, sampler="random", pruner=pruner,
                     pruner_options=options, epochs=4, n_trials=8, seed=0,
                     storage=f"sqlite:///{tmp_path / 'st.db'}", study_name="p")
    study = tune(None, wine, cfg, out_dir=tmp_path / "t", measure_options=FAST).report["study"]
    stopped = [r for r in study["trials"] if r["state"] == "pruned"]
    assert stopped and all(r["epochs_run"] < 4 for r in stopped)
    assert study["epochs"]["saved"] == sum(4 - r["epochs_run"] for r in stopped) > 0
    assert study["epochs"]["spent"] < 8 * 4


def test_unknown_pruner_names_the_choices():
    from core.tuning import make_pruner

    with pytest.raises(InvalidParameterError, match="hyperband") as exc:
        make_pruner("sometimes", None, 9)
    assert "'pruner'" in str(exc.value) and "sometimes" in str(exc.value)


def test_multi_objective_rule_spares_faster_trials():
    import optuna

    from core.tuning import MultiObjectiveMedianRule

    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, lat in [(0.9, 1.0), (0.8, 1.0), (0.85, 1.0)]:
        t = study.ask()
        t.set_user_attr("studio", {"val_curve": [acc - 0.1, acc], "latency_ms": lat})
        study.tell(t, [acc, lat])
    rule = MultiObjectiveMedianRule(n_startup_trials=3, n_warmup_steps=1, others=("latency_ms",))
    assert rule.should_stop(study, 2, 0.5, {"latency_ms": 1.0})  # as slow, much worse: stop
    assert not rule.should_stop(study, 2, 0.95, {"latency_ms": 1.0})
    assert not rule.should_stop(study, 2, 0.5, {"latency_ms": 0.2})  # faster: no peers
    assert not rule.should_stop(study, 1, 0.1, {"latency_ms": 1.0})  # warm-up


# --- the study engine ----------------------------------------------------------------------
def test_tune_writes_report_csv_yaml_and_resumes(tmp_path, wine):
    from core.tuning import TuneConfig, train_best, tune

    cfg = TuneConfig(data="wine", model="mlp", space={"lr": LR, "width": [8, 16]},
                     sampler="tpe", pruner="median", epochs=2, n_trials=3, seed=3,
                     storage=f"sqlite:///{tmp_path / 'st.db'}", study_name="s1",
                     pruner_options={"n_startup_trials": 1, "n_warmup_steps": 0})
    res = tune(None, wine, cfg, out_dir=tmp_path / "t1", measure_options=FAST)
    study = res.report["study"]
    assert res.report["operation"] == "tune" and res.report["method"] == "tpe"
    assert study["n_trials"] == 3 and not study["resumed"] and len(study["best"]) == 1
    best = study["best"][0]
    assert best["values"]["accuracy"] == max(r["values"]["accuracy"] for r in study["trials"]
                                             if r["values"])
    assert best["model_kwargs"]["hidden_dims"][0] in (8, 16)
    assert study["epochs"]["spent"] == sum(r["epochs_run"] for r in study["trials"])
    rows = list(csv.DictReader((tmp_path / "t1" / "trials.csv").open()))
    assert len(rows) == 3 and "param_lr" in rows[0] and "value_accuracy" in rows[0]
    exported = yaml.safe_load((tmp_path / "t1" / "study.yaml").read_text())
    assert exported["config"]["study_name"] == "s1" and len(exported["trials"]) == 3
    # no local path in it: rerun elsewhere, it uses that machine's default study file
    assert exported["config"]["storage"] is None
    assert str(tmp_path) not in (tmp_path / "t1" / "study.yaml").read_text()
    # Resume: the same study grows to 5 trials; the first 3 are kept unchanged.
    more = tune(None, wine, TuneConfig.from_file_dict(exported).replace(n_trials=5,
                storage=cfg.storage), out_dir=tmp_path / "t2", measure_options=FAST)
    study2 = more.report["study"]
    assert study2["resumed"] and study2["finished_before"] == 3 and study2["n_trials"] == 5
    assert [r["params"] for r in study2["trials"][:3]] == [r["params"] for r in study["trials"]]
    # Train best -> a measured variant with the trial's widths
    out = train_best(tmp_path / "t2", out_dir=tmp_path / "best", measure_options=FAST)
    rep = json.loads((tmp_path / "best" / "report.json").read_text())
    assert rep["operation"] == "tune" and rep["parent"] == "t2"
    assert rep["config"]["trial"] == study2["best"][0]["number"]
    assert (tmp_path / "best" / "model.onnx").is_file() and out.report["result"]["accuracy"] > 0


def test_existing_study_with_other_objectives_is_refused(tmp_path, wine):
    from core.tuning import StorageError, TuneConfig, tune

    base = dict(data="wine", model="mlp", space={"width": [4, 8]}, epochs=1, n_trials=1,
                storage=f"sqlite:///{tmp_path / 'st.db'}", study_name="same", sampler="random")
    tune(None, wine, TuneConfig(**base), out_dir=tmp_path / "a", measure_options=FAST)
    with pytest.raises(StorageError, match="created with objectives \\['accuracy'\\]"):
        tune(None, wine, TuneConfig(**base, objectives=("accuracy", "size")),
             out_dir=tmp_path / "b", measure_options=FAST)
    assert not (tmp_path / "b").exists()


def test_unreachable_storage_fails_fast_with_a_clear_message(tmp_path):
    from core.tuning import StorageError, open_storage

    with pytest.raises(StorageError, match="Cannot connect to the study storage "
                                           "'postgresql://u:\\*\\*\\*@127.0.0.1:9/db'"):
        open_storage("postgresql://u:secret@127.0.0.1:9/db")
    with pytest.raises(StudioError):
        open_storage("nosuchdialect://x/y")


def test_multi_objective_nas_respects_measured_latency_constraint(tmp_path, wine):
    from core.models import model_for_data
    from core.tuning import TuneConfig, measure_latency_ms, tune

    # The limit sits between the measured latencies of the smallest and largest candidates.
    lat = {w: measure_latency_ms(model_for_data("mlp", wine.input_shape, wine.num_classes,
                                                hidden_dims=[w, w]), wine, budget_s=0.05)
           for w in (8, 4096)}
    limit = (lat[8] * lat[4096]) ** 0.5
    assert lat[4096] > 3 * lat[8], lat
    cfg = TuneConfig(target="architecture", data="wine", model="mlp",
                     space={"depth": [2], "width": [8, 16, 4096]},
                     objectives=("accuracy", "latency", "size"), sampler="grid", pruner="median",
                     epochs=2, n_trials=3, max_latency_ms=limit, latency_budget_s=0.05,
                     storage=f"sqlite:///{tmp_path / 'nas.db'}", study_name="nas")
    res = tune(None, wine, cfg, out_dir=tmp_path / "nas", measure_options=FAST)
    study = res.report["study"]
    by_width = {r["params"]["width"]: r for r in study["trials"]}
    big = by_width[4096]
    assert big["state"] == "pruned" and big["stopped"] == "infeasible"
    assert big["latency_ms"] > limit and big["epochs_run"] == 0  # measured, never trained
    assert study["pareto_front"], "the small widths are feasible"
    for row in study["trials"]:
        assert (row["feasible"] is True) == (row["latency_ms"] <= limit)
    for row in study["pareto_front"]:
        assert row["feasible"] and row["values"]["latency"] <= limit
        assert row["values"]["size"] == row["size_bytes"]
    assert study["epochs"]["infeasible_trials"] >= 1


def test_constraints_reach_the_samplers_that_use_them():
    from core.tuning import TuneConfig, make_sampler

    def cf(trial):
        return [0.0]

    for name in ("tpe", "nsga2", "gp"):
        s = make_sampler(TuneConfig(sampler=name, max_latency_ms=1.0), constraints_func=cf)
        assert getattr(s, "_constraints_func", None) is cf


def test_recipe_target_prunes_quantizes_and_hands_out_the_trial(tmp_path, wine):
    from core.tuning import TuneConfig, train_best, tune

    with pytest.raises(InvalidParameterError, match="space.quantization_method"):
        TuneConfig(target="recipe", space={"quantization_method": ["magic-int3"]})
    cfg = TuneConfig(target="recipe", data="wine", model="mlp", epochs=2, sampler="grid",
                     space={"pruning_method": ["structured-l2"], "sparsity": [0.5],
                            "finetune_epochs": [1], "quantization_method": ["ort-dynamic-int8"]},
                     objectives=("accuracy", "size"), n_trials=1, latency_budget_s=0.02,
                     storage=f"sqlite:///{tmp_path / 'r.db'}", study_name="recipe")
    res = tune(None, wine, cfg, out_dir=tmp_path / "recipe", measure_options=FAST)
    row = res.report["study"]["trials"][0]
    assert row["state"] == "complete" and [s["operation"] for s in row["steps"]] == \
        ["prune", "quantize"]
    final = json.loads((Path(row["run_dir"]) / "report.json").read_text())
    assert final["operation"] == "quantize"
    assert row["values"]["size"] == final["result"]["size_bytes"]
    assert row["values"]["accuracy"] == final["result"]["accuracy"]
    assert (tmp_path / "recipe-baseline" / "report.json").is_file()  # trained once
    out = train_best(tmp_path / "recipe", out_dir=tmp_path / "variant")
    assert out.report["tuning"]["trial"] == 0 and (tmp_path / "variant" / "model.onnx").is_file()


@pytest.mark.parametrize("name", ["tune_digits", "nas_cnn", "tune_recipe"])
def test_shipped_examples_are_valid_studies(name):
    import yaml

    from core.tuning import TuneConfig
    from core.tuning._space import SearchSpace

    values = yaml.safe_load((Path(__file__).parents[1] / "examples" / f"{name}.yaml").read_text())
    cfg = TuneConfig.from_dict(values)
    assert cfg.n_trials >= 1 and cfg.study_name == name
    if cfg.space:
        assert SearchSpace(cfg.space).names


def test_tune_digits_example_runs_from_the_cli(tmp_path):
    from core.cli import run

    example = Path(__file__).parents[1] / "examples" / "tune_digits.yaml"
    code = run(["tune", "--config", str(example), "--n-trials", "2", "--out",
                str(tmp_path / "t")])
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    assert code == 0 and report["study"]["n_trials"] == 2
