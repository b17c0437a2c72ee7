"""Structured pruning of a model converted from ONNX: BatchNorm put back for the fine-tune.

Exporters fold BatchNorm into the convolution before it, so a converted graph has none: after
channels are removed nothing re-centres the activations, and the fine-tune starts from a
collapsed model (a MobileNetV3-style export fell to 9.6 % and recovered to 79 %). Each
convolution gets a BatchNorm that computes the identity on the unpruned model (its running
statistics and affine are the convolution's own output statistics), so the studio's
BatchNorm re-estimation restores each channel's distribution after pruning; the BatchNorms
are folded back into the convolutions (``torch.nn.utils.fusion``) before the model is saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

_SUFFIX = "_studio_bn"
CALIBRATION_ROWS = 256


def folded_graph(model: Any) -> bool:
    """Whether ``model`` is an fx graph (what :func:`core.artifacts.onnx_to_torch` gives)
    with convolutions and no BatchNorm: the form of an exported, BN-folded network."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    modules = list(model.modules())
    return (any(isinstance(m, nn.Conv2d) for m in modules)
            and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules))


def run_with_batchnorm(fn: Any, model: Any, data: Any, cfg: Any, callbacks: Any) -> Any:
    """Run the pruning method ``fn(model, data, cfg, callbacks)``; a structured method on a
    BN-folded graph runs with BatchNorm put back (:func:`add_batchnorm`), folded after."""
    added = add_batchnorm(model, data.X_train) if cfg.structured and folded_graph(model) else 0
    log = fn(model, data, cfg, callbacks)
    if added:
        log["batchnorm_reinserted"] = {"layers": added, "folded_back": fold_batchnorm(model)}
    return log


def _conv_nodes(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """call_module nodes of Conv2d layers whose output is not the graph's output."""
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target),
                                                      nn.Conv2d):
            continue
        if any(user.op == "output" for user in node.users):
            continue  # a 1x1-conv classifier: its outputs are the logits
        out.append(node)
    return out


def _output_statistics(gm: torch.fx.GraphModule, nodes: list[torch.fx.Node],
                       X: np.ndarray) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and variance of each convolution's output on rows ``X``."""
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []
    for node in nodes:
        def hook(module: Any, args: Any, out: torch.Tensor, name: str = node.target) -> None:
            flat = out.detach().transpose(0, 1).reshape(out.shape[1], -1)
            stats[name] = (flat.mean(1), flat.var(1, unbiased=False))
        hooks.append(gm.get_submodule(node.target).register_forward_hook(hook))
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            gm(torch.from_numpy(np.ascontiguousarray(X)))
    finally:
        for h in hooks:
            h.remove()
        gm.train(was_training)
    return stats


def add_batchnorm(gm: torch.fx.GraphModule, X: np.ndarray, *,
                  rows: int = CALIBRATION_ROWS) -> int:
    """Insert after each convolution a BatchNorm2d that is the identity on ``gm`` as it is
    (statistics from the first ``rows`` of ``X``); returns how many were inserted."""
    nodes = _conv_nodes(gm)
    if not nodes:
        return 0
    stats = _output_statistics(gm, nodes, X[:rows])
    for node in nodes:
        mean, var = stats[node.target]
        bn = nn.BatchNorm2d(len(mean), eps=1e-5, momentum=0.1)
        with torch.no_grad():
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean)
        name = f"{node.target}{_SUFFIX}"
        gm.add_submodule(name, bn)
        with gm.graph.inserting_after(node):
            bn_node = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(bn_node, delete_user_cb=lambda user: user is not bn_node)
    gm.recompile()
    return len(nodes)


def fold_batchnorm(gm: torch.fx.GraphModule) -> int:
    """Fold the BatchNorms :func:`add_batchnorm` inserted back into their convolutions (the
    convolutions keep their names); returns how many were folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not str(node.target).endswith(_SUFFIX):
            continue
        conv_node = node.args[0]
        conv, bn = gm.get_submodule(conv_node.target), gm.get_submodule(node.target)
        gm.add_submodule(conv_node.target, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)
        gm.delete_submodule(node.target)
        folded += 1
    gm.recompile()
    return folded


def attention_product(model: Any) -> str | None:
    """Where a converted ONNX graph computes attention: "ONNX Attention node '<name>'" or
    "MatMul of two activations '<name>'" (Q·Kᵀ or weights·V, as opsets before 23 write it),
    else None. Torch-Pruning's channel grouping does not end on such a graph: each reshape
    around it maps indices as if channels were axis 1, and the index sets grow on every pass
    (an exported TransformerEncoder, either form, ran past 10 minutes)."""
    if not isinstance(model, torch.fx.GraphModule):
        return None
    from_input: set[torch.fx.Node] = set()
    for node in model.graph.nodes:
        if node.op == "placeholder" or any(a in from_input for a in node.all_input_nodes):
            from_input.add(node)
        if node.op != "call_module":
            continue
        kind = type(model.get_submodule(node.target)).__name__
        if kind == "OnnxAttention":
            return f"ONNX Attention node '{node.target}'"
        if kind == "OnnxMatMul" and all(a in from_input for a in node.args[:2]):
            return f"MatMul of two activations '{node.target}'"
    return None


def channels_moved(model: Any) -> str | None:
    """Where a converted ONNX graph moves the channel axis after a layer with weights
    ("Transpose '<name>'", e.g. to NHWC for a LayerNorm over channels and a MatMul, as a
    ConvNeXt block writes it), else None. Torch-Pruning's grouping did not end on such a
    graph either (a ConvNeXt-style export ran past 7 minutes and 8 GB), so it is refused."""
    if not isinstance(model, torch.fx.GraphModule):
        return None
    after_weights: set[torch.fx.Node] = set()
    for node in model.graph.nodes:
        module = model.get_submodule(node.target) if node.op == "call_module" else None
        if any(a in after_weights for a in node.all_input_nodes) or (
                module is not None and any(True for _ in module.parameters(recurse=False))):
            after_weights.add(node)
        if type(module).__name__ != "OnnxTranspose" or node not in after_weights:
            continue
        perm = module.perm
        if perm is None or len(perm) < 2 or perm[1] != 1:
            return f"Transpose '{node.target}' (perm {perm})"
    return None
