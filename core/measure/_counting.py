"""Parameter and MAC counts, for torch modules and ONNX graphs alike."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

_SKIP_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "scale", "zero_point")
# PT2E's converted programs keep quantization parameters as '_scale_0', '_zero_point_0', ...
_PT2E_QPARAM = re.compile(r"(^|\.)_(scale|zero_point)_\d+$")


def _tensors(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)


def torch_param_counts(model: Any) -> tuple[int, int]:
    """(parameters, non-zero parameters) from the state dict; quantized weights count too
    (quantized tensors, and the plain int8/uint8 weights of a PT2E program)."""
    import torch

    total = nonzero = 0
    for name, value in model.state_dict().items():
        if name.endswith(_SKIP_SUFFIXES) or _PT2E_QPARAM.search(name):
            continue
        for t in _tensors(value):
            if t.is_quantized:
                t = t.dequantize()
            weight = t.is_floating_point() or t.dtype in (torch.int8, torch.uint8)
            if not weight or t.numel() == 0:
                continue
            total += t.numel()
            nonzero += int((t != 0).sum())
    return total, nonzero


def torch_macs(model: Any, example: Any) -> int | None:
    """Useful multiply-accumulates of one forward pass: FLOPs / 2 from torch's flop counter,
    less the taps of zero-padded convolutions that fall on padding."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.measure._efficiency import torch_padding_waste

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            model(example)
        flops = counter.get_total_flops()
        waste = torch_padding_waste(model, example) if flops else 0
    except Exception:  # scripted or quantized modules the counter cannot follow
        return None
    return int(flops // 2 - waste) if flops else None


def _onnx_model(path: str | Path):
    from core.artifacts._onnx import read_graph

    return read_graph(path, external_data=True)


_META_INPUT_OPS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "Reshape": (1,),
                   "MatMulNBits": (2, 3, 4), "Unsqueeze": (1,), "Squeeze": (1,),
                   "Slice": (1, 2, 3, 4), "Expand": (1,), "Gather": (1,)}


def onnx_param_counts(path: str | Path) -> tuple[int, int]:
    """(parameters, non-zero) of an ONNX graph's weights, leaving out scales and shapes."""
    from onnx import numpy_helper

    model = _onnx_model(path)
    meta: set[str] = set()
    nbits: dict[str, int] = {}
    for node in model.graph.node:
        for idx in _META_INPUT_OPS.get(node.op_type, ()):
            if idx < len(node.input):
                meta.add(node.input[idx])
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            nbits[node.input[1]] = attrs.get("K", 0) * attrs.get("N", 0)
    total = nonzero = 0
    for init in model.graph.initializer:
        if init.name in meta:
            continue
        if init.name in nbits:
            total += nbits[init.name]
            nonzero += nbits[init.name]
            continue
        arr = numpy_helper.to_array(init)
        if arr.size <= 1 or arr.dtype.kind not in "fiu" or arr.dtype == np.int64:
            continue
        total += arr.size
        nonzero += int(np.count_nonzero(arr))
    return total, nonzero


def onnx_macs(path: str | Path) -> int | None:
    """Useful MACs of one sample through an ONNX graph, from shapes inferred at batch 1
    (convolution taps that fall on zero padding are not counted)."""
    per_node = onnx_node_macs(path)
    return None if per_node is None else sum(per_node.values())


def onnx_node_macs(path: str | Path) -> dict[str, int] | None:
    """Useful MACs of one sample per ONNX node (by node name; Conv/MatMul/Gemm kinds)."""
    import onnx

    from core.measure._efficiency import onnx_node_conv_macs

    model = onnx.ModelProto()
    model.CopyFrom(_onnx_model(path))  # the shared parse is read-only; batch 1 is set below
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return None
    shapes: dict[str, list[int]] = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    found: dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        macs = _node_macs(node, shapes, onnx_node_conv_macs)
        if macs:
            key = node.name or f"{node.op_type}_{i}"
            found[key] = found.get(key, 0) + macs
    return found


def _node_macs(node: Any, shapes: dict[str, list[int]], conv_macs: Any) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if not out or 0 in out:
        return 0
    size = int(np.prod(out))
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        useful = conv_macs(node, shapes)  # taps on zero padding left out
        w = shapes.get(node.input[3 if op == "QLinearConv" else 1])
        if useful is not None:
            return useful
        return size * int(np.prod(w[1:])) if w and len(w) >= 3 else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
        a = shapes.get(node.input[0])
        if a:
            trans = op == "Gemm" and "transA" in attrs and attrs["transA"].i
            return size * (a[0] if trans else a[-1])
        return 0
    if op == "MatMulNBits":
        return size * int(attrs["K"].i)
    return 0
