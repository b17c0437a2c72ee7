"""The pruning loop shared by every criterion: prune a step, measure, fine-tune, repeat."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from core.callbacks import Callbacks
from core.measure import evaluate
from core.pruning._config import PruningConfig
from core.training import TrainConfig
from core.training import finetune as run_finetune


def _val_accuracy(model: nn.Module, data: Any) -> float:
    split = "val" if len(data.y_val) else "test"
    return float(evaluate(model, data, split).accuracy)


def _counts(model: nn.Module) -> tuple[int, int]:
    from core.measure import torch_param_counts

    return torch_param_counts(model)


def _make_pruner(model: nn.Module, data: Any, cfg: PruningConfig) -> tuple[Any, Any]:
    """The criterion's pruner, and the training hook that keeps unstructured masks applied
    (and gathers scores while training) or None."""
    from core.pruning._structured import StructuredPruner, taylor_gradients
    from core.pruning._unstructured import MaskedPruner

    if cfg.structured:
        example = torch.from_numpy(data.X_train[:2])
        return StructuredPruner(model, example, cfg, taylor_gradients(data, cfg)), None
    pruner = MaskedPruner(model, cfg, data)
    return pruner, pruner.after_step()


def _row(model: nn.Module, data: Any, step: int, sparsity: float,
         acc_pruned: float | None = None) -> dict[str, Any]:
    """One history row: the sparsity reached, val accuracy (right after pruning and now),
    params and non-zero params."""
    params, nonzero = _counts(model)
    val = _val_accuracy(model, data)
    return {"step": step, "sparsity": float(sparsity),
            "val_accuracy_pruned": val if acc_pruned is None else acc_pruned,
            "val_accuracy": val, "params": params, "nonzero_params": nonzero}


def run_schedule(model: nn.Module, data: Any, cfg: PruningConfig,
                 callbacks: Callbacks | None = None, *, span: float = 0.8) -> dict[str, Any]:
    """Prune ``model`` in place along ``cfg``'s schedule, fine-tuning between steps.

    Returns a log: per-step history (sparsity, val accuracy right after pruning and after
    fine-tuning, params) and the test accuracy before the last fine-tune.
    """
    cb = Callbacks.ensure(callbacks)
    cfg, finetune_choice = cfg.for_model(model)
    targets = cfg.targets()
    movement = cfg.criterion.scores_while_training  # scores gathered while fine-tuning
    rounds = len(targets) + (1 if movement else 0)
    per = span / max(rounds, 1)
    pruner, after_step = _make_pruner(model, data, cfg)
    start = _row(model, data, 0, 0.0)
    history = [start]
    cb.metrics({**start, "phase": "baseline"})

    teacher = _teacher(model, cfg)
    finetunes: list[dict[str, Any]] = []

    def finetune(k: int, label: str) -> None:
        tc = None
        if cfg.finetune_epochs >= 1:
            tc = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                             optimizer=cfg.optimizer, weight_decay=cfg.weight_decay,
                             seed=cfg.seed + k)
        res = run_finetune(model, data, tc, teacher=teacher, distill_alpha=cfg.distill_alpha,
                           temperature=cfg.distill_temperature, after_step=after_step,
                           callbacks=cb.sub(k * per + per / 2, (k + 1) * per, label,
                                            metrics=False))
        finetunes.append({"step": k + 1, **res.to_dict()})

    before_ft = None
    pending: dict[str, Any] | None = None  # movement: a step's row waits for its fine-tune
    for i, target in enumerate(targets):
        cb.progress(i * per, f"Step {i + 1}/{len(targets)}: pruning to {target:.0%}")
        if movement:
            finetune(i, f"Step {i + 1}: fine-tuning, gathering movement scores — ")
            if pending is not None:
                pending["val_accuracy"] = _val_accuracy(model, data)
                cb.metrics({**pending, "phase": "step"})
        if cfg.structured:
            pruner.step(data)
        else:
            pruner.prune_to(target)
        acc_pruned = _val_accuracy(model, data)
        last = i == len(targets) - 1
        if last:
            before_ft = float(evaluate(model, data, "test").accuracy)
        if not movement:
            finetune(i, f"Step {i + 1}: fine-tuning — ")
        elif last:
            finetune(i + 1, "Final fine-tune — ")
        row = _row(model, data, i + 1, target, acc_pruned)
        history.append(row)
        if movement and not last:
            pending = row
        else:
            cb.metrics({**row, "phase": "step"})
    cb.progress(span, "Pruning done")
    model.eval()
    return {"targets": targets, "history": history, "finetune_options": finetune_choice,
            "accuracy_before_finetune": before_ft,
            "finetune": finetunes, "finetune_kept_epoch": finetunes[-1]["chosen_epoch"]
            if finetunes else None,
            "width_attributes_updated": dict(getattr(pruner, "synced", {}) or {})}


def _teacher(model: nn.Module, cfg: PruningConfig) -> nn.Module | None:
    """The unpruned model, frozen, when the fine-tune is distillation-assisted."""
    if cfg.distill_alpha <= 0:
        return None
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def layer_table(before: nn.Module, after: nn.Module) -> list[dict[str, Any]]:
    """Per weight layer: width (output channels), params and non-zero, before and after."""
    def layers(model: nn.Module) -> dict[str, dict[str, int]]:
        from core.pruning._unstructured import weight_layers

        state = model.state_dict()
        out: dict[str, dict[str, int]] = {}
        for key, name in weight_layers(model, state).items():
            w = state[key]
            tensors = [w] + ([state[name + ".bias"]] if name + ".bias" in state else [])
            width = w.shape[-1] if key == name else w.shape[0]  # MatMul constant: [in, out]
            out[name] = {"width": int(width), "params": sum(t.numel() for t in tensors),
                         "nonzero": sum(int((t != 0).sum()) for t in tensors)}
        return out

    b, a = layers(before), layers(after)
    rows = []
    for name, bv in b.items():
        av = a.get(name, {"width": 0, "params": 0, "nonzero": 0})
        rows.append({"layer": name, "width_before": bv["width"], "width_after": av["width"],
                     "params_before": bv["params"], "params_after": av["params"],
                     "nonzero_before": bv["nonzero"], "nonzero_after": av["nonzero"],
                     "sparsity": 1.0 - av["nonzero"] / bv["params"] if bv["params"] else 0.0})
    return rows
