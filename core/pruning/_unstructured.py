"""Unstructured pruning: per-weight masks from a score, made permanent (plain zeros, no hooks)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from core.errors import InvalidParameterError, UnsupportedModelError
from core.pruning._config import PruningConfig

GLOBAL = ("global-magnitude", "taylor-unstructured")  # movement ranks per layer


def prunable_weights(model: nn.Module, ignore: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """Weight matrices/kernels (≥ 2-D, named ``*weight``) of the model, minus ignored layers."""
    found = {name: p for name, p in model.named_parameters()
             if name.endswith("weight") and p.dim() >= 2}
    layers = {n.rsplit(".", 1)[0] if "." in n else n for n in found}
    for name in ignore:
        if name not in layers:
            raise InvalidParameterError("ignore", f"names of weight layers, e.g. "
                                        f"{sorted(layers)[:6]}", name)
    out = {n: p for n, p in found.items()
           if (n.rsplit(".", 1)[0] if "." in n else n) not in set(ignore)}
    if not out:
        raise UnsupportedModelError("The model has no weight layers to prune.")
    return out


class MaskedPruner:
    """Keeps one fixed mask per weight; ``prune_to(s)`` grows the masks to sparsity ``s``."""

    def __init__(self, model: nn.Module, cfg: PruningConfig, data: Any) -> None:
        self.model, self.cfg, self.data = model, cfg, data
        self.weights = prunable_weights(model, tuple(cfg.ignore))
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.weights.items()}
        self.movement = {n: torch.zeros_like(p) for n, p in self.weights.items()} \
            if cfg.method == "movement" else None
        self._gen = torch.Generator().manual_seed(cfg.seed)

    # --- scores ---------------------------------------------------------------------------
    def _scores(self) -> dict[str, torch.Tensor]:
        method = self.cfg.method
        if method in ("l1-unstructured", "global-magnitude"):
            return {n: p.detach().abs() for n, p in self.weights.items()}
        if method == "random-unstructured":
            return {n: torch.rand(p.shape, generator=self._gen) + 1e-6
                    for n, p in self.weights.items()}
        if method == "taylor-unstructured":
            return self._taylor()
        assert self.movement is not None
        # movement score S = -sum(grad * W): weights moving away from zero score high
        live = torch.cat([s[self.masks[n]] for n, s in self.movement.items()])
        low = float(live.min()) if live.numel() else 0.0
        return {n: (s - low + 1e-6) for n, s in self.movement.items()}

    def _taylor(self) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        acc = {n: torch.zeros_like(p) for n, p in self.weights.items()}
        X, y = self.data.X_train, self.data.y_train
        bs = self.cfg.batch_size
        self.model.eval()
        for i in range(min(self.cfg.score_batches, math.ceil(len(y) / bs))):
            self.model.zero_grad(set_to_none=True)
            xb = torch.from_numpy(X[i * bs:(i + 1) * bs])
            F.cross_entropy(self.model(xb), torch.from_numpy(y[i * bs:(i + 1) * bs])).backward()
            for n, p in self.weights.items():
                if p.grad is not None:
                    acc[n] += (p.grad * p.detach()).abs()
        self.model.zero_grad(set_to_none=True)
        return {n: a + 1e-12 for n, a in acc.items()}

    # --- masks ----------------------------------------------------------------------------
    def prune_to(self, sparsity: float) -> None:
        """Zero the lowest-scored weights so that ``sparsity`` of them are zero (cumulative)."""
        scores = self._scores()
        for n in scores:  # already-pruned weights stay pruned: lowest possible score
            scores[n] = torch.where(self.masks[n], scores[n].float(), torch.zeros(()))
        if self.cfg.method in GLOBAL:
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
        """The training hook: gather movement scores (if any), then re-apply the masks."""

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
