"""Federated learning at scale: synthetic or partitioned clients, FedAvg / FedProx / Reptile.

``scale(...)`` runs one experiment at several client counts (vectorised over clients with
``torch.func.vmap``, a per-client loop as reference, or Flower's simulation engine) and
measures time, memory, accuracy, convergence and bytes communicated.
"""

from core.federated._clients import ClientSet, generate_synthetic_clients, partition_dataset
from core.federated._config import ALGORITHMS, ScaleConfig
from core.federated._engine import FedResult, plan_round, run_federated
from core.federated._scale import (
    ScalabilityTester,
    convergence_round,
    estimate_memory_mb,
    scale,
)
from core.federated._tuning import federated_objective

__all__ = [
    "ALGORITHMS",
    "ClientSet",
    "FedResult",
    "ScalabilityTester",
    "ScaleConfig",
    "convergence_round",
    "estimate_memory_mb",
    "federated_objective",
    "generate_synthetic_clients",
    "partition_dataset",
    "plan_round",
    "run_federated",
    "scale",
]
