"""Tune federated (meta-)learning with the seeds' space: ``HyperparameterTuner`` functions.

``FEDERATED_PARAM_SPACE`` (inner_lr, outer_lr, inner_steps, num_rounds, batch_size,
hidden_dims, dropout) names the seeds' dimensions; ``federated_objective`` turns them into a
``model_fn`` and a ``train_fn`` that run the real federated simulation and return its
measured accuracy on the clients' held-out rows.
"""

from __future__ import annotations

from typing import Any, Callable

from core.federated._clients import ClientSet, generate_synthetic_clients
from core.federated._config import ScaleConfig
from core.federated._engine import run_federated

# space name -> ScaleConfig field
_CONFIG_KEYS = {"inner_lr": "inner_lr", "outer_lr": "outer_lr", "inner_steps": "inner_steps",
                "num_rounds": "rounds", "batch_size": "batch_size", "lr": "lr", "mu": "mu",
                "local_epochs": "local_epochs"}


def federated_objective(clients: ClientSet | None = None, *, algorithm: str = "reptile",
                        num_clients: int = 10, samples_per_client: int = 35,
                        input_dim: int = 9, num_classes: int = 4, alpha: float | None = 0.5,
                        seed: int = 0) -> tuple[Callable[..., Any], Callable[..., dict]]:
    """``(model_fn, train_fn)`` for ``HyperparameterTuner``: an ``mlp`` built from
    ``hidden_dims``/``dropout``, trained by ``algorithm`` over the same seeded clients in
    every trial; ``train_fn`` returns ``accuracy`` (the global model after the last round)
    and ``adapted_accuracy`` (after local adaptation, for meta-learning)."""
    from core.models import build_model

    clients = clients or generate_synthetic_clients(
        num_clients, samples_per_client, input_dim, num_classes, alpha=alpha, seed=seed)

    def model_fn(params: dict[str, Any]) -> Any:
        import torch

        torch.manual_seed(seed)
        return build_model("mlp", input_dim=input_dim, num_classes=num_classes,
                           hidden_dims=list(params.get("hidden_dims", [32, 16])),
                           dropout=float(params.get("dropout", 0.0)))

    def train_fn(model: Any, params: dict[str, Any]) -> dict[str, float]:
        fields = {_CONFIG_KEYS[k]: v for k, v in params.items() if k in _CONFIG_KEYS}
        config = ScaleConfig(algorithm=algorithm, client_counts=(len(clients.X_train),),
                             input_dim=input_dim, num_classes=num_classes, seed=seed, **fields)
        result = run_federated(model, clients, config)
        adapted = result.adaptation.get("adapted_accuracy", result.final_accuracy)
        return {"accuracy": result.final_accuracy, "adapted_accuracy": float(adapted)}

    return model_fn, train_fn
