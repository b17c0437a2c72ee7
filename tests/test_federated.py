"""Federated scalability engine: partitions, engines, stragglers, bytes, meta-learning, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import InvalidParameterError, StudioError
from core.federated import (
    ScaleConfig,
    convergence_round,
    generate_synthetic_clients,
    partition_dataset,
    plan_round,
    run_federated,
    scale,
)
from core.models import build_model

FAST = {"budget_s": 0.02, "memory": False}


def _mlp(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)


@pytest.mark.parametrize("algorithm", ["fedavg", "fedprox", "reptile"])
def test_vectorized_matches_loop(algorithm):
    clients = generate_synthetic_clients(8, 20, 9, 4, alpha=0.5, quantity_skew=0.5, seed=3)
    assert len(set(clients.counts.tolist())) > 1  # ragged clients are padded and masked
    cfg = ScaleConfig(rounds=3, algorithm=algorithm, batch_size=8, local_epochs=2, mu=0.1,
                      client_fraction=0.75, stragglers=0.3, adapt_steps=2, chunk_size=3)
    model = _mlp()
    vec = run_federated(model, clients, cfg, engine="vectorized")
    loop = run_federated(model, clients, cfg, engine="loop")
    assert vec.engine == "vectorized" and loop.engine == "loop"
    for k in vec.state:
        assert torch.allclose(vec.state[k], loop.state[k], atol=1e-5), k
    assert [h["participants"] for h in vec.history] == [h["participants"] for h in loop.history]
    assert vec.adaptation["adapted_accuracy"] == pytest.approx(
        loop.adaptation["adapted_accuracy"], abs=1e-9)
    # the input model is not modified
    assert torch.equal(model.state_dict()["classifier.weight"],
                       _mlp().state_dict()["classifier.weight"])


def test_chunking_does_not_change_the_model():
    clients = generate_synthetic_clients(10, 12, 9, 4, seed=0)
    a = run_federated(_mlp(), clients, ScaleConfig(rounds=2, chunk_size=3), engine="vectorized")
    b = run_federated(_mlp(), clients, ScaleConfig(rounds=2, chunk_size=0), engine="vectorized")
    assert a.chunk_size == 3 and b.chunk_size == 10
    for k in a.state:
        assert torch.allclose(a.state[k], b.state[k], atol=1e-5)


def test_iid_split_is_stratified_and_dirichlet_is_skewed():
    iid = generate_synthetic_clients(20, 35, 9, 4, seed=0)
    hist = iid.label_histogram()
    assert (hist.sum(1) == 35).all() and hist.min() >= 8 and hist.max() <= 9
    skewed = generate_synthetic_clients(200, 35, 9, 4, alpha=0.1, seed=0).stats()
    mild = generate_synthetic_clients(200, 35, 9, 4, alpha=100.0, seed=0).stats()
    assert skewed["mean_max_class_share"] > 0.7
    assert mild["mean_max_class_share"] < 0.45
    assert skewed["mean_classes_per_client"] < mild["mean_classes_per_client"]
    # same seed, same clients
    again = generate_synthetic_clients(20, 35, 9, 4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(iid.X_train, again.X_train))


def test_quantity_and_feature_skew():
    ragged = generate_synthetic_clients(50, 35, 9, 4, alpha=1.0, quantity_skew=0.8, seed=0)
    assert ragged.counts.min() < 35 < ragged.counts.max()
    flat = generate_synthetic_clients(30, 40, 9, 4, seed=0)
    shifted = generate_synthetic_clients(30, 40, 9, 4, feature_shift=3.0, seed=0)
    spread = lambda cs: np.std([x.mean(0) for x in cs.X_train], axis=0).mean()  # noqa: E731
    assert spread(shifted) > 2 * spread(flat)


def test_partition_dataset_uses_the_data():
    from core.data import load_dataset

    data = load_dataset("health")
    parts = partition_dataset(data, 12, 30, alpha=0.2, seed=0)
    assert parts.num_clients == 12 and (parts.counts == 30).all()
    assert parts.input_shape == (9,) and parts.num_classes == 4
    assert parts.stats()["mean_max_class_share"] > 0.6
    assert len(parts.y_test) == len(data.y_test)
    # rows come from the train split (no reuse needed at this size)
    X, _ = data.split("train")
    assert parts.info["reused_pools"] == 0
    assert (np.abs(X - parts.X_train[0][0]).sum(1) < 1e-6).any()


def test_stragglers_and_sampling_are_seeded():
    counts = np.full(20, 10)
    cfg = ScaleConfig(client_fraction=0.5, stragglers=0.3, seed=4)
    p1, p1b = plan_round(cfg, counts, 1), plan_round(cfg, counts, 1)
    p2 = plan_round(cfg, counts, 2)
    assert len(p1.sampled) == 10 and len(p1.participants) == 7
    assert np.array_equal(p1.participants, p1b.participants)
    assert not np.array_equal(p1.sampled, p2.sampled)
    assert set(p1.participants) <= set(p1.sampled)


def test_bytes_per_round_is_serialized_size_times_participants():
    from safetensors.torch import save

    model = _mlp()
    size = len(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    clients = generate_synthetic_clients(10, 12, 9, 4, seed=0)
    cfg = ScaleConfig(rounds=3, stragglers=0.2, adapt_steps=0)
    res = run_federated(model, clients, cfg)
    for h in res.history:
        assert h["participants"] == 8 and h["sampled"] == 10 and h["stragglers"] == 2
        assert h["bytes_up"] == size * 8 and h["bytes_down"] == size * 10
    # a smaller (pruned) model really sends less
    small = build_model("mlp", input_dim=9, hidden_dims=[16, 8], num_classes=4)
    assert run_federated(small, clients, cfg).history[0]["bytes_up"] < size * 8


def test_meta_learning_adaptation_beats_fedavg_on_non_iid_clients():
    clients = generate_synthetic_clients(10, 35, 9, 4, alpha=0.1, local_test_fraction=0.5,
                                         seed=1)
    fedavg = run_federated(_mlp(), clients, ScaleConfig(rounds=10, algorithm="fedavg"))
    meta = run_federated(_mlp(), clients, ScaleConfig(rounds=10, algorithm="reptile"))
    # equal rounds: Reptile's model adapted with 5 local steps vs FedAvg's global model
    assert meta.adaptation["adapted_accuracy"] > fedavg.adaptation["local_accuracy"] + 0.1
    assert meta.adaptation["adapted_accuracy"] > meta.adaptation["local_accuracy"]


def test_convergence_round():
    assert convergence_round([0.1, 0.5, 0.79, 0.8, 0.8], 0.01) == 3
    assert convergence_round([0.5], 0.0) == 1


@pytest.mark.parametrize("kwargs", [
    {"client_counts": (0, 4)}, {"client_counts": (-3,)}, {"client_counts": ()},
    {"rounds": 0}, {"rounds": -1}, {"alpha": 0.0}, {"alpha": -1.0},
    {"stragglers": 1.0}, {"client_fraction": 0.0}, {"algorithm": "sgd"},
    {"engine": "spark"},
])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(InvalidParameterError):
        ScaleConfig(**kwargs)


def test_bad_partitions_are_refused():
    with pytest.raises(InvalidParameterError, match="stratified"):
        generate_synthetic_clients(4, 3, 9, 4)
    with pytest.raises(InvalidParameterError, match="alpha"):
        generate_synthetic_clients(4, 10, 9, 4, alpha=0)
    with pytest.raises(InvalidParameterError, match="num_clients"):
        generate_synthetic_clients(0, 10, 9, 4)
    generate_synthetic_clients(4, 3, 9, 4, alpha=0.5)  # non-IID needs no stratification


def test_too_many_clients_for_memory_is_refused_up_front(tmp_path):
    cfg = ScaleConfig(client_counts=(4, 10_000_000), rounds=1)
    with pytest.raises(InvalidParameterError, match=r"10000000 clients need an estimated"):
        scale("mlp", None, cfg, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(InvalidParameterError, match="memory"):
        scale("mlp", None, ScaleConfig(client_counts=(50,), memory_limit_mb=0.01),
              out_dir=tmp_path / "run")


def test_peak_memory_sampler_sees_a_transient_allocation():
    """The scale report's peak_memory_mb comes from this sampler: a 64 MB array that is freed
    before the sampler stops still counts (peak, not end), and nothing is counted without it."""
    import time

    import numpy as np

    from core.federated._scale import _PeakRSS

    with _PeakRSS(interval_s=0.001) as mem:
        block = np.ones(64 * 2**20 // 8)  # touched pages: resident
        end = time.monotonic() + 30  # a loaded machine may not run the sampler for a while
        while mem.growth_mb < 48 and time.monotonic() < end:
            time.sleep(0.01)
        del block
    assert mem.growth_mb >= 48
    with _PeakRSS() as idle:
        time.sleep(0.02)
    assert idle.growth_mb < 16


def test_scale_writes_report_and_tables(tmp_path):
    cfg = ScaleConfig(client_counts=(4, 12), rounds=4, samples_per_client=20, stragglers=0.25)
    res = scale("mlp", None, cfg, out_dir=tmp_path / "run", measure_options=FAST)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["operation"] == "scale" and report["method"] == "fedavg"
    rows = report["scalability"]["results"]
    assert [r["clients"] for r in rows] == [4, 12]
    for r in rows:
        assert r["total_s"] > 0 and r["time_per_round_s"] > 0
        assert 1 <= r["convergence_round"] <= 4 and 0 <= r["final_accuracy"] <= 1
        assert r["peak_memory_mb"] is not None
        assert r["bytes_per_round"] == r["model_bytes"] * (r["clients"] - r["clients"] // 4)
    assert report["result"]["accuracy"] == pytest.approx(rows[-1]["final_accuracy"], abs=1e-6)
    assert (tmp_path / "run" / "scalability.csv").read_text().startswith("clients,")
    assert len((tmp_path / "run" / "rounds.csv").read_text().splitlines()) == 1 + 2 * 4
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert res.run_dir == tmp_path / "run"


def test_scale_on_a_session_variant_sends_its_artifact_bytes(tmp_path):
    from core.runs import train_baseline
    from core.training import TrainConfig

    base = tmp_path / "base"
    train_baseline("mlp", "health", out_dir=base, config=TrainConfig(epochs=1),
                   model_kwargs={"hidden_dims": [16]}, measure_options=FAST)
    cfg = ScaleConfig(client_counts=(5,), rounds=2, samples_per_client=20, alpha=0.5)
    res = scale(base, None, cfg, out_dir=tmp_path / "run", measure_options=FAST)
    row = res.report["scalability"]["results"][0]
    base_report = json.loads((base / "report.json").read_text())
    assert row["model_bytes"] == base_report["result"]["size_bytes"]
    assert res.report["parent"] == "base"
    assert row["partition"]["source"] == "health"


def test_scalability_tester_facade(tmp_path):
    from core.federated import ScalabilityTester

    tester = ScalabilityTester(lambda: _mlp(1), out_dir=tmp_path / "t")
    rows = tester.run_scalability_test(client_counts=[4, 8], num_rounds=2,
                                       samples_per_client=12)
    assert [r["clients"] for r in rows] == [4, 8]
    assert {"total_s", "time_per_round_s", "peak_memory_mb", "final_accuracy",
            "convergence_round", "bytes_communicated"} <= set(rows[0])


def test_registry_and_cli(tmp_path, capsys):
    from core.cli import run
    from core.registry import list_methods

    assert {"fedavg", "fedprox", "reptile"} <= set(list_methods("federated"))
    out = tmp_path / "cli"
    code = run(["scale", "--client-counts", "3,6", "--rounds", "2", "--samples-per-client",
                "12", "--algorithm", "reptile", "--alpha", "0.5", "--stragglers", "0.2",
                "--out", str(out)])
    assert code == 0 and (out / "report.json").is_file()
    assert "clients" in capsys.readouterr().out
    errors: list[str] = []
    assert run(["scale", "--client-counts", "0", "--out", str(tmp_path / "x")],
               err=errors.append) == 2
    assert run(["scale", "--alpha", "0", "--out", str(tmp_path / "x")], err=errors.append) == 2
    assert run(["scale", "--samples-per-client", "2", "--client-counts", "3",
                "--out", str(tmp_path / "x")], err=errors.append) == 2
    assert "client_counts" in errors[0] and "alpha" in errors[1] and "stratified" in errors[2]


def test_flower_engine_without_the_extra_says_what_to_install(tmp_path):
    pytest.importorskip("torch")
    try:
        import flwr  # noqa: F401
    except ImportError:
        with pytest.raises(StudioError, match="pip install"):
            scale("mlp", None, ScaleConfig(client_counts=(3,), rounds=1, engine="flower"),
                  out_dir=tmp_path / "f")
    else:
        pytest.skip("flwr is installed; see test_federated_flower.py")


def test_the_seeds_federated_space_tunes_a_real_simulation():
    from core.federated import federated_objective
    from core.tuning import FEDERATED_PARAM_SPACE, HyperparameterTuner

    space = {**FEDERATED_PARAM_SPACE, "num_rounds": {"type": "int", "low": 2, "high": 4}}
    model_fn, train_fn = federated_objective(num_clients=6)
    tuner = HyperparameterTuner(model_fn, train_fn, space, metric="adapted_accuracy")
    result = tuner.random_search(n_trials=3)
    assert len(result.history) == 3 and 0 < result.best_score <= 1
    assert set(result.best_params) == set(space)
    # the same parameters give the same measured accuracy (seeded clients and model)
    again = train_fn(model_fn(result.best_params), result.best_params)
    assert again["adapted_accuracy"] == pytest.approx(result.best_score)
