"""The Flower engine (optional extra, Message API): same experiment, same model as the built-in
engines. Runs in its own environment: `make test-flower` (flwr pins an older protobuf)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr.serverapp.strategy", reason="the flwr[simulation] extra is missing")


def _setup():
    import torch

    from core.federated import generate_synthetic_clients
    from core.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)
    return model, generate_synthetic_clients(6, 20, 9, 4, alpha=0.5, seed=0)


def test_a_straggler_trains_nothing_and_a_participant_trains(tmp_path):
    import copy

    from core.federated import ScaleConfig
    from core.federated._engine import plan_round
    from core.federated._flower import _floating_state, _Job, local_train

    model, clients = _setup()
    cfg = ScaleConfig(rounds=1, stragglers=0.4)
    plan = plan_round(cfg, clients.counts, 1)
    gone = sorted(set(plan.sampled.tolist()) - set(plan.participants.tolist()))
    job = _Job(copy.deepcopy(model), clients, cfg)
    start = _floating_state(model)
    assert gone and local_train(job, gone[0], start, 1) is None
    state, loss = local_train(job, int(plan.participants[0]), start, 1)
    assert loss > 0 and not state["features.1.weight"].equal(start["features.1.weight"])


class _Reply:
    """A reply as the strategy sees it (flwr Messages exist only inside a run)."""

    def __init__(self, partition: int, error: str | None = None) -> None:
        from types import SimpleNamespace

        self.content = {"metrics": {"partition-id": partition}}
        self.error = SimpleNamespace(reason=error)

    def has_error(self) -> bool:
        return self.error.reason is not None


def test_a_client_failure_stops_the_run_with_its_reason():
    from core.federated import ScaleConfig
    from core.federated._engine import plan_round
    from core.federated._flower import STRAGGLER, _check_replies

    _, clients = _setup()
    plan = plan_round(ScaleConfig(rounds=1, stragglers=0.4), clients.counts, 1)
    good = {int(c) for c in plan.participants}
    replies = [_Reply(int(c), None if int(c) in good else STRAGGLER) for c in plan.sampled]
    _check_replies(replies, plan)  # the plan's participants answered: fine
    first = int(plan.participants[0])
    broken = [_Reply(first, "ValueError: bad rows") if r.content["metrics"]["partition-id"]
              == first else r for r in replies]
    with pytest.raises(RuntimeError, match=rf"clients \[{first}\] sent no update: ValueError"):
        _check_replies(broken, plan)


def test_a_crashed_simulation_is_one_clear_error(monkeypatch):
    import flwr.simulation

    from core.errors import StudioError
    from core.federated import ScaleConfig
    from core.federated._flower import run_flower

    def crash(**_kwargs):
        raise RuntimeError("Simulation Runtime crashed.")

    monkeypatch.setattr(flwr.simulation, "run_simulation", crash)
    model, clients = _setup()
    with pytest.raises(StudioError, match="stopped after 0 of 2 rounds: Simulation Runtime"):
        run_flower(model, clients, ScaleConfig(rounds=2))


def test_flower_engine_trains_and_measures_the_same_as_the_builtin_engine():
    """One Ray simulation (each costs a Ray start): scale()'s row for one client count on
    ``--engine flower`` against the vectorized engine, with Reptile's server step on top of
    Flower's FedAvg, 4 of 6 clients sampled per round and one of them a straggler. Saving
    the model needs ONNX (not in this venv), so the row is taken before that."""
    import torch

    from core.callbacks import Callbacks
    from core.federated import ScaleConfig
    from core.federated._scale import _run_count

    model, _ = _setup()
    cfg = ScaleConfig(client_counts=(6,), samples_per_client=20, rounds=3, client_fraction=0.7,
                      stragglers=0.4, algorithm="reptile", engine="flower")
    setup = {"shape": (9,), "classes": 4, "travel_bytes": 1000}
    ours, flower, _ = _run_count(model, None, cfg, 6, 0, setup, Callbacks.ensure(None))
    theirs, builtin, _ = _run_count(model, None, cfg.replace(engine="vectorized"), 6, 0, setup,
                                    Callbacks.ensure(None))
    assert ours["engine"] == "flower" and flower.engine == "flower"
    assert [h["stragglers"] for h in flower.history] == [1, 1, 1]
    for key in ("clients", "rounds", "bytes_communicated", "participants_per_round",
                "convergence_round"):
        assert ours[key] == theirs[key], key
    for key in ("final_accuracy", "best_accuracy", "local_accuracy", "adapted_accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
    assert len(flower.history) == len(builtin.history) == 3
    for mine, ref in zip(flower.history, builtin.history):
        assert mine.keys() == ref.keys()
        for key in ("sampled", "participants", "bytes_down", "bytes_up"):
            assert mine[key] == ref[key], key
        for key in ("accuracy", "test_loss", "train_loss"):
            assert mine[key] == pytest.approx(ref[key], abs=1e-4), key
    assert flower.state.keys() == builtin.state.keys()
    for k in builtin.state:
        assert torch.allclose(flower.state[k], builtin.state[k], atol=1e-5), k
    assert flower.adaptation == pytest.approx(builtin.adaptation)
    assert flower.state["features.1.weight"].ne(model.state_dict()["features.1.weight"]).any()
