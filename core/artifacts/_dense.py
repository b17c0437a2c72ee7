"""Dense layers written as ``MatMul(x, W)`` (+ ``Add(_, b)``) become ``Gemm``, which onnx2torch
converts to ``nn.Linear``: what structured pruning, low-rank factorization and torch INT8
quantization work on.

Hand-written with onnx's helpers because no library at hand fuses them safely: onnxscript's
``matmul_add_to_gemm_rule`` checks only the ranks (it turned an Add of a [2, 1, N] constant into
an invalid Gemm) and has no rule for a MatMul alone, ONNX Runtime's MatMulAddFusion runs only
inside a session together with all its other level-1 rewrites, and onnxoptimizer's
``fuse_matmul_add_bias_into_gemm`` would be a new dependency.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

_BIAS_GEMM_OPSET = 9  # onnx2torch converts Gemm from version 9 on
_NO_BIAS_GEMM_OPSET = 11  # Gemm's C is optional from opset 11 on


def dense_layers_as_gemm(model: Any) -> int:
    """Rewrite ``model`` in place: each ``MatMul`` of a rank-2 activation by a float32 rank-2
    initializer becomes ``Gemm``, taking in the following ``Add`` of a constant bias that
    broadcasts as one value per output column. Rank > 2 MatMuls (attention, sequences) are
    left alone. (onnx2torch gives every use of a shared initializer its own copy anyway.)
    Returns how many."""
    from onnx import helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph = model.graph
    if opset < _BIAS_GEMM_OPSET or not any(n.op_type == "MatMul" for n in graph.node):
        return 0  # (shape inference costs a copy of the model)
    ranks = _ranks(model)
    uses = _uses(graph)
    inits = {i.name: i for i in graph.initializer}
    fixed = {o.name for o in graph.output}  # weights also listed as inputs are still weights
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    rewritten = 0
    for node in list(graph.node):
        if not _is_dense_matmul(node, inits, ranks, fixed):
            continue
        add, bias = _bias_add(graph, node, consumers, inits, uses, fixed)
        if add is None and opset < _NO_BIAS_GEMM_OPSET:
            continue
        inputs = [node.input[0], node.input[1], *([bias] if add is not None else [])]
        output = add.output[0] if add is not None else node.output[0]
        gemm = helper.make_node("Gemm", inputs, [output], name=node.name or output)
        graph.node.insert(list(graph.node).index(node), gemm)
        graph.node.remove(node)
        if add is not None:
            graph.node.remove(add)
        rewritten += 1
    return rewritten


def _is_dense_matmul(node: Any, inits: dict[str, Any], ranks: dict[str, int],
                     fixed: set[str]) -> bool:
    """``MatMul(x, W)``: x of rank 2, W a float32 rank-2 initializer."""
    from onnx import TensorProto

    if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
        return False
    x, w = node.input
    weight = inits.get(w)
    return (weight is not None and w not in fixed and len(weight.dims) == 2
            and weight.data_type == TensorProto.FLOAT and ranks.get(x) == 2)


def _bias_add(graph: Any, matmul: Any, consumers: dict[str, list[Any]],
              inits: dict[str, Any], uses: Counter, fixed: set[str]) -> tuple[Any, str | None]:
    """The ``Add`` of a constant bias that is the MatMul result's only use, and the name of
    that bias as one value per output column (reshaped in place to [N]); else (None, None)."""
    from onnx import TensorProto, helper, numpy_helper

    out = matmul.output[0]
    users = consumers.get(out, [])
    if out in fixed or uses[out] != 1 or len(users) != 1:
        return None, None
    add = users[0]
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
        return None, None
    bias = add.input[1] if add.input[0] == out else add.input[0]
    tensor = inits.get(bias)
    if (tensor is None or bias == out or bias in fixed or uses[bias] != 1
            or tensor.data_type != TensorProto.FLOAT):
        return None, None
    columns = int(inits[matmul.input[1]].dims[1])
    value = numpy_helper.to_array(tensor)
    if value.ndim > 2 or (value.ndim == 2 and value.shape[0] != 1) \
            or value.size not in (1, columns):
        return None, None  # it would change the result's shape (or is per row): not a bias
    if value.shape != (columns,):
        flat = np.broadcast_to(value.reshape(-1), (columns,)).copy()
        tensor.CopyFrom(numpy_helper.from_array(flat, bias))
        for declared in graph.input:  # an older exporter's weights listed as inputs too
            if declared.name == bias:
                declared.CopyFrom(helper.make_tensor_value_info(bias, TensorProto.FLOAT,
                                                                [columns]))
    return add, bias


def _ranks(model: Any) -> dict[str, int]:
    """The rank of every value shape inference can tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    return {vi.name: len(vi.type.tensor_type.shape.dim)
            for vi in [*graph.value_info, *graph.input, *graph.output]
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")}


def _uses(graph: Any) -> Counter:
    """How many times each name is read, subgraphs (If/Loop bodies) and graph outputs too."""
    from onnx import AttributeProto

    counts: Counter = Counter(o.name for o in graph.output)
    for node in graph.node:
        counts.update(name for name in node.input if name)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                counts.update(_uses(attr.g))
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    counts.update(_uses(sub))
    return counts


def contiguous_linear_weights(module: Any) -> int:
    """onnx2torch sets an ``nn.Linear``'s weight to a transposed view of a Gemm's B (transB=0,
    as every MatMul is): ``torch.nn.utils.prune`` then fails ('view size is not compatible').
    Each such weight gets its own contiguous copy. Returns how many."""
    import torch

    fixed = 0
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and not layer.weight.is_contiguous():
            layer.weight.data = layer.weight.data.contiguous()
            fixed += 1
    return fixed
