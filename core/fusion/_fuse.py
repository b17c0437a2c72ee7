"""Operator fusion on a torch.fx graph: fold BatchNorm into the Conv/Linear before it, and run
an activation in place right after its Conv/Linear (one module, no extra tensor).

The folding itself is torch's (``torch.nn.utils.fusion.fuse_conv_bn_eval`` /
``fuse_linear_bn_eval``); only the graph matching is written here (no non-deprecated torch
utility matches Conv→BN→ReLU chains on an arbitrary module).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InvalidParameterError, UnsupportedModelError
from core.fusion._patterns import PATTERNS, normalize_pattern  # noqa: F401  (re-exported)

LAYERS = {"conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d), "linear": (nn.Linear,)}
BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6"}
ACT_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6"}

class FusedActivation(nn.Module):
    """A Conv/Linear whose activation runs in place on its output (one call, no new tensor)."""

    def __init__(self, layer: nn.Module, activation: str) -> None:
        super().__init__()
        self.layer, self.activation = layer, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x)
        return F.relu(y, inplace=True) if self.activation == "relu" else \
            F.hardtanh(y, 0.0, 6.0, inplace=True)


@dataclass
class FusionInfo:
    """What was fused: each fusion as ``{"pattern", "layer", "into"}``, and node counts."""

    fused: list[dict[str, str]] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    modules_before: int = 0
    modules_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _module(gm: Any, node: Any) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _kind(gm: Any, node: Any) -> str | None:
    """'conv' / 'linear' for a plain (unfused) Conv/Linear module call, else None."""
    mod = _module(gm, node)
    return next((k for k, types in LAYERS.items() if type(mod) in types), None)


def _activation(gm: Any, node: Any) -> str | None:
    if node.op == "call_module":
        return ACT_MODULES.get(type(gm.get_submodule(node.target)))
    if node.op == "call_function":
        return ACT_FUNCTIONS.get(node.target)
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return "relu"
    return None


def _single_input(node: Any) -> Any:
    """The producer of a node that has exactly one tensor input used only by this node."""
    if not node.args or len(node.all_input_nodes) != 1:
        return None
    src = node.args[0]
    return src if hasattr(src, "users") and len(src.users) == 1 else None


def _fold_batchnorms(gm: Any, patterns: set[str], info: FusionInfo) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    for node in list(gm.graph.nodes):
        bn = _module(gm, node)
        src = _single_input(node) if isinstance(bn, BNS) else None
        kind = _kind(gm, src) if src is not None else None
        if kind is None or not any(p.startswith(f"{kind}-bn") for p in patterns):
            continue
        layer = gm.get_submodule(src.target)
        fold = fuse_conv_bn_eval if kind == "conv" else fuse_linear_bn_eval
        gm.set_submodule(src.target, fold(layer, bn))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        info.fused.append({"pattern": f"{kind}-bn", "layer": src.target, "into": node.name})


def _fuse_activations(gm: Any, patterns: set[str], info: FusionInfo) -> None:
    for node in list(gm.graph.nodes):
        act = _activation(gm, node)
        src = _single_input(node) if act else None
        kind = _kind(gm, src) if src is not None else None
        if kind is None or not any(p.startswith(kind) and p.endswith(f"-{act}")
                                   for p in patterns):
            continue
        gm.set_submodule(src.target, FusedActivation(gm.get_submodule(src.target), act))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        info.fused.append({"pattern": f"{kind}-{act}", "layer": src.target, "into": node.name})


def fuse_model(model: nn.Module, patterns: Any) -> tuple[Any, FusionInfo]:
    """A fused copy of ``model`` (a torch.fx GraphModule, eval mode) and what was fused."""
    wanted = {normalize_pattern(p) for p in patterns}
    if not wanted:
        raise InvalidParameterError("patterns", f"a non-empty list of {list(PATTERNS)}", [])
    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:
        raise UnsupportedModelError(
            "Fusion needs a model torch.fx can trace (no data-dependent control flow in "
            f"forward()): {str(exc).splitlines()[0][:160]}") from None
    info = FusionInfo(nodes_before=len(gm.graph.nodes),
                      modules_before=sum(1 for _ in gm.modules()))
    _fold_batchnorms(gm, wanted, info)
    _fuse_activations(gm, wanted, info)
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    info.nodes_after = len(gm.graph.nodes)
    info.modules_after = sum(1 for _ in gm.modules())
    return gm.eval(), info
