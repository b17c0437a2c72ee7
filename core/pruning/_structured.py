"""Structured pruning with Torch-Pruning's dependency graph: channels, neurons, heads removed."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import nn

from core.errors import InvalidParameterError, UnsupportedModelError
from core.pruning._config import PruningConfig, cubic_schedule
from core.pruning._criteria import tp_module


def _quiet_torch_pruning() -> None:
    """Inside catch_warnings: Torch-Pruning's note on each op it treats as element-wise (a
    fact about the user's model, one per op; any real failure shows in check_forward)."""
    warnings.filterwarnings("ignore", message=r"\[Warning\] Unknown operation",
                            module="torch_pruning")
    # a converted ONNX graph's MatMul constants: pruned on their last (output) dimension, as
    # a MatMul's [in, out] weight is; the pruned forward is checked (check_forward)
    warnings.filterwarnings("ignore", message="Unwrapped parameters detected",
                            module="torch_pruning")


def output_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The classifier head: ``model.classifier`` or else the last Linear layer."""
    named = dict(model.named_modules())
    if isinstance(named.get("classifier"), (nn.Linear, nn.Conv2d)):
        return "classifier", named["classifier"]
    last = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = (name, module)
    return last


def _resolve_ignored(model: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    named = dict(model.named_modules())
    out = []
    for name in names:
        if name not in named:
            prunable = [n for n, m in named.items() if isinstance(m, (nn.Linear, nn.Conv2d))]
            raise InvalidParameterError("ignore", f"names of layers of the model, e.g. "
                                        f"{prunable[:6]}", name)
        out.append(named[name])
    return out


def _attention_blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules()
            if hasattr(m, "qkv") and hasattr(m, "num_heads") and hasattr(m, "head_dim")]


def check_not_emptied(model: nn.Module, cfg: PruningConfig, ignored: list[nn.Module]) -> None:
    """Refuse a ratio that would remove every channel (or head) of some layer."""
    skip = {id(m) for layer in ignored for m in layer.modules()}
    qkv = {id(b.qkv) for b in _attention_blocks(model)}
    for name, module in model.named_modules():
        if id(module) in skip:
            continue
        width = None
        what = "channels"
        if isinstance(module, nn.Conv2d):
            width = module.out_channels
        elif isinstance(module, nn.Linear) and (id(module) not in qkv or
                                                cfg.attention == "head-dims"):
            width = module.out_features
            what = "neurons"
        if id(module) in qkv and cfg.attention == "heads":
            block = next(b for b in _attention_blocks(model) if b.qkv is module)
            width, what = int(block.num_heads), "heads"
        if width is None:
            continue
        kept = int(width * (1 - cfg.sparsity))
        if cfg.round_to and what != "heads":
            kept -= kept % cfg.round_to
        if kept < 1:
            raise InvalidParameterError(
                "sparsity", f"small enough to keep at least one of the {width} {what} of "
                f"layer '{name}' (with round_to={cfg.round_to})", cfg.sparsity)


class StructuredPruner:
    """Wraps a Torch-Pruning MetaPruner that reaches ``cfg.sparsity`` over ``len(targets)``
    steps; ``step()`` removes the next slice of channels in place."""

    def __init__(self, model: nn.Module, example: torch.Tensor, cfg: PruningConfig,
                 grad_fn: Callable[[nn.Module], None] | None = None) -> None:
        tp = tp_module()
        self.model, self.cfg, self.grad_fn = model, cfg, grad_fn
        self.criterion = cfg.criterion
        head = output_layer(model)
        names = tuple(cfg.ignore) + ((head[0],) if head and head[0] not in cfg.ignore else ())
        ignored = _resolve_ignored(model, names)
        check_not_emptied(model, cfg, ignored)
        self.blocks = _attention_blocks(model)
        kwargs: dict[str, Any] = {}
        if self.blocks:
            by_heads = cfg.attention == "heads"
            kwargs.update(num_heads={b.qkv: int(b.num_heads) for b in self.blocks},
                          prune_num_heads=by_heads, prune_head_dims=not by_heads,
                          head_pruning_ratio=cfg.sparsity if by_heads else 0.0)
        round_to = cfg.round_to
        self.mhas = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
        if self.mhas:  # as Torch-Pruning's torchvision ViT example: widths in steps of heads
            round_to = math.lcm(round_to or 1, *(int(m.num_heads) for m in self.mhas))
        self.width_attrs = _width_attributes(model, self.mhas)
        unwrapped = [(p, p.dim() - 1) for n, p in model.named_parameters(recurse=False)
                     if p.dim() >= 2]
        if unwrapped:
            kwargs["unwrapped_parameters"] = unwrapped
        steps = len(cfg.targets())
        try:
            with warnings.catch_warnings():
                _quiet_torch_pruning()
                self.pruner = tp.pruner.MetaPruner(
                    model, example, importance=self.criterion.importance(cfg),
                    pruning_ratio=cfg.sparsity, ignored_layers=ignored,
                    iterative_steps=steps,
                    iterative_pruning_ratio_scheduler=_scheduler(cfg),
                    round_to=round_to, **kwargs)
            if self.blocks and cfg.attention == "heads":
                self.pruner.per_step_head_pruning_ratio = head_step_ratios(
                    int(self.blocks[0].num_heads), cfg)
        except Exception as exc:
            raise UnsupportedModelError(
                f"Torch-Pruning cannot trace this model for structured pruning "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). Use an "
                "unstructured method, or a model built from standard layers.") from None

    def step(self, data: Any) -> None:
        """Remove the next slice of channels (a gradient criterion first gathers them)."""
        if self.criterion.needs_gradients and self.grad_fn is not None:
            self.grad_fn(self.model)
        try:
            with warnings.catch_warnings():
                _quiet_torch_pruning()
                self.pruner.step()
        except Exception as exc:
            raise UnsupportedModelError(
                f"Torch-Pruning failed to prune this model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160]}).") from None
        for block in self.blocks:  # keep the attention modules' bookkeeping in step
            heads = int(self.pruner.num_heads.get(block.qkv, block.num_heads))
            block.num_heads = heads
            block.head_dim = block.qkv.out_features // (3 * heads)
            if hasattr(block, "scale"):  # as a rebuilt model of these widths computes it
                block.scale = block.head_dim ** -0.5
        self.synced = _sync_width_attributes(self.width_attrs, self.mhas)
        self.model.zero_grad(set_to_none=True)
        check_forward(self.model, data)


_WIDTH_NAMES = ("hidden_dim", "embed_dim", "d_model", "dim", "width", "hidden_size",
                "embed_dims", "num_features")


def _width_attributes(model: nn.Module, mhas: list[nn.Module]) -> list[tuple[str, nn.Module,
                                                                              str, int]]:
    """Plain int attributes (``hidden_dim`` ...) equal to the attention width, which a
    forward may use in a reshape (torchvision's ViT does): they must follow the pruning."""
    widths = {int(m.embed_dim) for m in mhas}
    if len(widths) != 1:
        return []
    width = widths.pop()
    found = []
    for path, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            continue
        for name in _WIDTH_NAMES:
            value = module.__dict__.get(name)
            if type(value) is int and value == width:
                found.append((f"{path}.{name}" if path else name, module, name, value))
    return found


def _sync_width_attributes(attrs: list[tuple[str, nn.Module, str, int]],
                           mhas: list[nn.Module]) -> dict[str, list[int]]:
    """Set the recorded width attributes to the pruned attention width; returns the changes."""
    if not attrs or not mhas:
        return {}
    new = int(mhas[0].embed_dim)
    changed = {}
    for label, module, name, old in attrs:
        if getattr(module, name) != new:
            setattr(module, name, new)
            changed[label] = [old, new]
    return changed


def head_step_ratios(heads: int, cfg: PruningConfig) -> list[float]:
    """Per-step head ratios for Torch-Pruning, which removes ``ceil(ratio × current heads)``
    each step: chosen so the kept heads follow the schedule (``heads − ceil(t × heads)``)."""
    kept = [heads] + [heads - math.ceil(t * heads - 1e-9) for t in cfg.targets()]
    ratios = [0.0]
    for before, after in zip(kept, kept[1:]):
        removed = before - after
        ratios.append((removed - 0.5) / before if removed > 0 else 0.0)
    return ratios


def _linear(target: float, steps: int) -> list[float]:
    return [target * i / steps for i in range(steps + 1)]


def _scheduler(cfg: PruningConfig) -> Callable[[float, int], list[float]]:
    """Torch-Pruning's per-step ratio scheduler for ``cfg``'s schedule."""
    if cfg.schedule == "gradual":
        return cubic_schedule
    if cfg.schedule == "linear":
        return lambda target, steps: [0.0, *cfg.targets()]
    return _linear


def check_forward(model: nn.Module, data: Any) -> None:
    """Run a small batch; if a layer breaks after pruning, name it."""
    started: list[str] = []
    finished: set[str] = set()
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue
        hooks.append(module.register_forward_pre_hook(
            lambda m, a, n=name: started.append(n)))
        hooks.append(module.register_forward_hook(lambda m, a, o, n=name: finished.add(n)))
    model.eval()
    try:
        with torch.no_grad():
            model(torch.from_numpy(data.X_train[:2]))
    except Exception as exc:
        failing = [n for n in started if n not in finished]
        where = f"layer '{failing[-1]}'" if failing else "the model's forward"
        raise UnsupportedModelError(
            f"After structured pruning, {where} no longer runs ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); it probably hard-codes a width. Use an "
            f"unstructured method or list that layer in 'ignore'.") from None
    finally:
        for h in hooks:
            h.remove()


def taylor_gradients(data: Any, cfg: PruningConfig) -> Callable[[nn.Module], None]:
    """A function that accumulates loss gradients on a train slice (Taylor importance)."""
    import torch.nn.functional as F

    def fill(model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        model.eval()
        X, y = data.X_train, data.y_train
        bs = cfg.batch_size
        for i in range(min(cfg.score_batches, math.ceil(len(y) / bs))):
            xb = torch.from_numpy(X[i * bs:(i + 1) * bs])
            yb = torch.from_numpy(y[i * bs:(i + 1) * bs])
            F.cross_entropy(model(xb), yb).backward()

    return fill


def builtin_widths(model: nn.Module) -> dict[str, Any]:
    """Read the widths of a (pruned) built-in model from its layer shapes."""
    family = getattr(model, "family", "")
    if family == "mlp":
        return {"hidden_dims": [m.out_features for m in model.features
                                if isinstance(m, nn.Linear)]}
    if family == "cnn":
        return {"channels": [m.out_channels for m in model.features
                             if isinstance(m, nn.Conv2d)],
                "hidden_dims": [m.out_features for m in model.head if isinstance(m, nn.Linear)]}
    if family == "vit":
        head_dims = {b.attn.head_dim for b in model.blocks}
        if len(head_dims) != 1:
            raise UnsupportedModelError(
                f"Head-dim pruning left blocks with different head sizes {sorted(head_dims)}; "
                "the vit family needs one head_dim. Use attention='heads'.")
        heads = [int(b.attn.num_heads) for b in model.blocks]
        mlp = [b.mlp[0].out_features for b in model.blocks]
        return {"dim": model.patch_embed.out_channels, "head_dim": head_dims.pop(),
                "heads": heads if len(set(heads)) > 1 else heads[0],
                "mlp_dim": mlp if len(set(mlp)) > 1 else mlp[0]}
    raise UnsupportedModelError(f"'{family}' is not a built-in family.")


def materialise(model: nn.Module, data: Any) -> tuple[nn.Module, float]:
    """Rebuild a pruned built-in model as a plain family + new widths, with its weights.

    Returns the rebuilt model and the max |difference| of its outputs from the pruned one."""
    from core.models import build_model

    spec = model.spec()
    kwargs = {**spec.kwargs, **builtin_widths(model)}
    fresh = build_model(spec.family, **kwargs)
    try:
        fresh.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise UnsupportedModelError(f"The pruned model does not map onto '{spec.family}' "
                                    f"with widths {builtin_widths(model)}: {exc}") from None
    fresh.eval()
    model.eval()
    x = torch.from_numpy(data.X_test[:64])
    with torch.no_grad():
        diff = float((fresh(x) - model(x)).abs().max())
    if not diff <= 1e-4:
        raise UnsupportedModelError(f"The rebuilt '{spec.family}' model differs from the "
                                    f"pruned one (max |diff| {diff:.2e}).")
    return fresh, diff
