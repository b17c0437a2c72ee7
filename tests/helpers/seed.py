"""Helpers for the seed-example tests: the seeds' HealthMonitorNet and quick timing."""

from __future__ import annotations

import torch
from torch import nn


class HealthMonitorNet(nn.Module):
    """The seeds' model: an MLP (input_dim → hidden_dims → num_classes)."""

    def __init__(self, input_dim: int, hidden_dims: list[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden_dims:
            layers += [nn.Linear(input_dim, width), nn.ReLU()]
            input_dim = width
        self.net = nn.Sequential(*layers, nn.Linear(input_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def quick_measurement(monkeypatch) -> None:
    """The seeds pass no measure options: make the protocol's defaults quick for tests."""
    import inspect

    from core.measure import _measure

    measure_many = inspect.unwrap(_measure.measure_many)  # under its shared-reads decorator
    monkeypatch.setattr(measure_many, "__kwdefaults__",
                        {**measure_many.__kwdefaults__, "budget_s": 0.02, "memory": False})
