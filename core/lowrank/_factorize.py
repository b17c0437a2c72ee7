"""Low-rank factorization by truncated SVD: a Linear becomes two Linears (in→r→out); a Conv2d
becomes a k×k Conv2d to r channels and a 1×1 Conv2d to the outputs (SVD of the kernel
reshaped to out × (in·k·k)). The product of the two factors is the best rank-r approximation
of the original weight (Eckart–Young), so at rank_ratio 1 outputs are unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from core.errors import InvalidParameterError, UnsupportedModelError

__all__ = ["FactorizationInfo", "factorizable_layers", "factorize_model", "rank_for"]


def factorizable_layers(model: nn.Module) -> list[str]:
    """Names of the Linear and (ungrouped) Conv2d layers that can be factorized."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


def rank_for(weight: torch.Tensor, rank_ratio: float) -> tuple[int, int]:
    """(full rank bound min(rows, cols), kept rank: ⌈ratio·full⌉ ≥ 1) of a weight as a matrix."""
    rows, cols = weight.shape[0], math.prod(weight.shape[1:])
    full = min(rows, cols)
    return full, max(1, min(full, math.ceil(rank_ratio * full - 1e-9)))


def _svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(left out×r, right r×cols, share of the squared singular values kept)."""
    matrix = weight.detach().reshape(weight.shape[0], -1).double()
    U, S, Vh = torch.linalg.svd(matrix, full_matrices=False)
    root = S[:rank].sqrt()
    energy = float((S[:rank] ** 2).sum() / (S ** 2).sum().clamp_min(1e-30))
    dtype = weight.dtype
    return (U[:, :rank] * root).to(dtype), (root[:, None] * Vh[:rank]).to(dtype), energy


def _factor_linear(layer: nn.Linear, rank: int) -> tuple[nn.Sequential, float]:
    left, right, energy = _svd_factors(layer.weight, rank)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    first.weight.data.copy_(right)
    second.weight.data.copy_(left)
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.data)
    return nn.Sequential(first, second), energy


def _factor_conv(layer: nn.Conv2d, rank: int) -> tuple[nn.Sequential, float]:
    left, right, energy = _svd_factors(layer.weight, rank)
    first = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, stride=layer.stride,
                      padding=layer.padding, dilation=layer.dilation, bias=False,
                      padding_mode=layer.padding_mode)
    second = nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None)
    first.weight.data.copy_(right.reshape(first.weight.shape))
    second.weight.data.copy_(left.reshape(second.weight.shape))
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.data)
    return nn.Sequential(first, second), energy


@dataclass
class FactorizationInfo:
    """Per factorized layer: shape, full and kept rank, params before/after, energy kept."""

    layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def params_before(self) -> int:
        return sum(e["params_before"] for e in self.layers)

    @property
    def params_after(self) -> int:
        return sum(e["params_after"] for e in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "params_before": self.params_before,
                "params_after": self.params_after}


def factorize_model(model: nn.Module, rank_ratio: float,
                    layers: Sequence[str] | None = None) -> tuple[nn.Module, FactorizationInfo]:
    """A copy of ``model`` with the chosen layers (default: all factorizable) factorized."""
    available = factorizable_layers(model)
    chosen = list(available if layers is None else layers)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise InvalidParameterError("layers", f"Linear/Conv2d layer names of this model "
                                    f"({available})", unknown[0])
    if not chosen:
        raise UnsupportedModelError("Nothing to factorize: the model has no Linear or Conv2d.")
    out = copy.deepcopy(model).eval()
    info = FactorizationInfo()
    for name in chosen:
        layer = out.get_submodule(name)
        full, rank = rank_for(layer.weight, rank_ratio)
        factor = _factor_linear if isinstance(layer, nn.Linear) else _factor_conv
        new, energy = factor(layer, rank)
        info.layers.append({
            "layer": name, "kind": type(layer).__name__, "weight_shape": list(layer.weight.shape),
            "full_rank": full, "rank": rank, "energy_kept": energy,
            "params_before": sum(p.numel() for p in layer.parameters()),
            "params_after": sum(p.numel() for p in new.parameters())})
        out.set_submodule(name, new)
    return out, info
