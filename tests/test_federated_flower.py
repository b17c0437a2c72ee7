"""The Flower engine (optional extra): same experiment, same model as the built-in engines."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr.simulation", reason="the flwr[simulation] extra is not installed")


@pytest.mark.slow
def test_flower_simulation_agrees_with_the_builtin_engine(tmp_path):
    import torch

    from core.federated import ScaleConfig, generate_synthetic_clients, run_federated, scale
    from core.federated._flower import run_flower
    from core.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", input_dim=9, hidden_dims=[32, 16], num_classes=4)
    clients = generate_synthetic_clients(6, 20, 9, 4, alpha=0.5, seed=0)
    cfg = ScaleConfig(rounds=3, stragglers=0.2, algorithm="fedavg")
    flower = run_flower(model, clients, cfg)
    builtin = run_federated(model, clients, cfg)
    assert flower.engine == "flower" and len(flower.history) == 3
    assert [h["participants"] for h in flower.history] == \
        [h["participants"] for h in builtin.history]
    assert abs(flower.final_accuracy - builtin.final_accuracy) <= 0.02
    for k in builtin.state:
        assert torch.allclose(flower.state[k], builtin.state[k], atol=1e-4), k
    res = scale(model, None, cfg.replace(client_counts=(4,), rounds=2, engine="flower"),
                out_dir=tmp_path / "f",
                measure_options={"budget_s": 0.02, "memory": False})
    assert res.report["scalability"]["results"][0]["engine"] == "flower"
