"""Unstructured pruning: per-weight masks from a score, made permanent (plain zeros, no hooks)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from core.errors import InvalidParameterError, UnsupportedModelError
from core.pruning._config import PruningConfig


def weight_layers(model: nn.Module, names: Any = None) -> dict[str, str]:
    """``{parameter or state name: its layer}`` for the weight matrices/kernels (≥ 2-D): those
    named ``*weight``, and the constant right operands of a converted ONNX graph's MatMul
    (onnx2torch keeps them as ``initializers.*``: converters write Dense layers as MatMul+Add).
    ``names`` (default: the parameters) maps names to tensors."""
    tensors = dict(model.named_parameters()) if names is None else names
    matmul = _matmul_constants(model)
    out = {}
    for name, t in tensors.items():
        if t.dim() < 2 or not t.is_floating_point():
            continue
        if name.endswith("weight"):
            out[name] = name.rsplit(".", 1)[0] if "." in name else name
        elif name in matmul:
            out[name] = name
    return out


def _matmul_constants(model: nn.Module) -> set[str]:
    """Names of the constants a torch.fx graph (an onnx2torch conversion) multiplies by."""
    if not isinstance(model, torch.fx.GraphModule):
        return set()
    modules = dict(model.named_modules())
    return {arg.target for node in model.graph.nodes
            if node.op == "call_module" and "MatMul" in type(modules.get(node.target)).__name__
            for arg in node.args if getattr(arg, "op", None) == "get_attr"}


def prunable_weights(model: nn.Module, ignore: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """Weight matrices/kernels of the model (``weight_layers``), minus ignored layers."""
    params = dict(model.named_parameters())
    found = weight_layers(model, params)
    for name in ignore:
        if name not in found.values():
            raise InvalidParameterError("ignore", f"names of weight layers, e.g. "
                                        f"{sorted(set(found.values()))[:6]}", name)
    out = {n: params[n] for n, layer in found.items() if layer not in set(ignore)}
    if not out:
        raise UnsupportedModelError("The model has no weight layers to prune.")
    return out


class MaskedPruner:
    """Keeps one fixed mask per weight; ``prune_to(s)`` grows the masks to sparsity ``s``."""

    def __init__(self, model: nn.Module, cfg: PruningConfig, data: Any) -> None:
        self.model, self.cfg, self.data = model, cfg, data
        self.weights = prunable_weights(model, tuple(cfg.ignore))
        self.criterion = cfg.criterion
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.weights.items()}
        self.movement = {n: torch.zeros_like(p) for n, p in self.weights.items()} \
            if self.criterion.scores_while_training else None
        self.generator = torch.Generator().manual_seed(cfg.seed)  # random criteria draw here

    # --- masks ----------------------------------------------------------------------------
    def prune_to(self, sparsity: float) -> None:
        """Zero the lowest-scored weights so that ``sparsity`` of them are zero (cumulative)."""
        scores = self.criterion.scores(self)
        for n in scores:  # already-pruned weights stay pruned: lowest possible score
            scores[n] = torch.where(self.masks[n], scores[n].float(), torch.zeros(()))
        if self.criterion.global_ranking:
            names = list(scores)
            flat = torch.cat([scores[n].reshape(-1) for n in names])
            mask = tprune.L1Unstructured(amount=float(sparsity)).compute_mask(
                flat, torch.ones_like(flat))
            start = 0
            for n in names:
                size = scores[n].numel()
                self.masks[n] = mask[start:start + size].reshape(scores[n].shape).bool()
                start += size
        else:
            for n, s in scores.items():
                method = tprune.L1Unstructured(amount=float(sparsity))
                self.masks[n] = method.compute_mask(s, torch.ones_like(s)).bool()
        self.apply_masks()

    def apply_masks(self) -> None:
        with torch.no_grad():
            for n, p in self.weights.items():
                p.mul_(self.masks[n])

    def after_step(self) -> Callable[[nn.Module], None]:
        """The training hook: gather scores while training (movement), re-apply the masks."""

        def hook(model: nn.Module) -> None:
            if self.movement is not None:
                for n, p in self.weights.items():
                    if p.grad is not None:
                        self.movement[n] -= p.grad.detach() * p.detach()
            self.apply_masks()

        return hook

    def sparsity(self) -> float:
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)
