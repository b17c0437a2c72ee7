"""ONNX → trainable torch module (onnx2torch), and ONNX parity checks for what comes back out."""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UnsupportedModelError

if TYPE_CHECKING:
    import torch

# onnx2torch 1.5.15 stops at opset 17. These operators changed only their type lists in
# opsets 16-25 (float8/int4/int2/bfloat16; Cast's saturate/round_mode apply to float8 only),
# so the converter of their previous version is exact (their signatures were checked equal).
_TYPE_ONLY_BUMPS: dict[str, tuple[int, ...]] = {
    **{op: (19, 21, 23, 24, 25)
       for op in ("Reshape", "Identity", "Cast", "Constant", "Shape", "Size")},
    **{op: (21, 23, 24, 25) for op in ("Flatten", "Transpose", "Squeeze", "Unsqueeze")},
    "ConstantOfShape": (20, 21, 23, 24, 25),
    "Equal": (19,), "GreaterOrEqual": (16,), "LessOrEqual": (16,), "IsInf": (20,),
    "IsNaN": (20,), "TopK": (24,),
    **{op: (22,) for op in (
        "Conv", "ConvTranspose", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "Dropout",
        "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Softsign",
        "InstanceNormalization", "LpNormalization", "ThresholdedRelu", "EyeLike",
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
        "Round")},
}


def _resize_extras(node: Any) -> str | bool:
    """What a Resize node uses of the options added in opsets 18/19, if anything."""
    attrs = node.attributes
    if attrs.get("antialias", 0):
        return "antialias=1"
    if "axes" in attrs:
        return "axes"
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        return "keep_aspect_ratio_policy"
    if attrs.get("coordinate_transformation_mode") == "half_pixel_symmetric":
        return "coordinate_transformation_mode=half_pixel_symmetric"
    return False


# Operators whose newer version added an input or attribute: the older converter is exact
# when the node does not use it (the guard says why not otherwise).
_GUARDED_BUMPS: dict[str, tuple[tuple[int, ...], Any]] = {
    "Pad": ((18, 19, 21, 23, 24, 25), lambda n: len(n.input_values) > 3 and "the 'axes' input"),
    "Split": ((18,), lambda n: False),
    "AveragePool": ((19, 22), lambda n: any(d != 1 for d in n.attributes.get("dilations", []))
                    and "dilations"),
    "Resize": ((18, 19), _resize_extras),
}
# Reduce* take ``axes`` as an input from opset 18 on (onnx2torch knows that for ReduceSum only).
_REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
               "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
_registered = False


def _import_onnx2torch() -> Any:
    """Import onnx2torch; it imports torchvision only for its detection ops (NMS, RoiAlign)."""
    try:
        return importlib.import_module("onnx2torch")
    except ModuleNotFoundError as exc:
        if exc.name == "onnx2torch":
            raise UnsupportedModelError(
                "Converting an ONNX model to torch needs the 'onnx2torch' package: "
                "pip install onnx2torch") from None
        if not (exc.name or "").startswith("torchvision"):
            raise
    except RuntimeError:  # a torchvision build that does not match torch fails on import
        pass
    # torchvision is missing or broken (the package index here has no CPU torchvision for
    # torch 2.13): classifiers never need NMS/RoiAlign, so import onnx2torch with a stand-in.
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.startswith("torchvision")}
    stand_in = types.ModuleType("torchvision")
    stand_in.ops = types.ModuleType("torchvision.ops")
    stand_in.ops.roi_align = None
    sys.modules.update({"torchvision": stand_in, "torchvision.ops": stand_in.ops})
    try:
        for name in [k for k in sys.modules if k.startswith("onnx2torch")]:
            del sys.modules[name]
        return importlib.import_module("onnx2torch")
    finally:
        del sys.modules["torchvision"], sys.modules["torchvision.ops"]
        sys.modules.update(saved)


def _register_newer_opsets() -> None:
    """Teach onnx2torch the opset 18-25 versions that torch 2.13's exporters write."""
    global _registered
    if _registered:
        return
    _import_onnx2torch()
    from onnx2torch.node_converters import registry

    for op, versions in _TYPE_ONLY_BUMPS.items():
        for version in versions:
            _alias(registry, op, version, guard=None)
    for op, (versions, guard) in _GUARDED_BUMPS.items():
        for version in versions:
            _alias(registry, op, version, guard=guard)
    for op in _REDUCE_OPS:
        _add(registry, op, 18, _reduce_with_axes_input)
    _add(registry, "ReduceMax", 20, _reduce_with_axes_input)
    _add(registry, "ReduceMin", 20, _reduce_with_axes_input)
    _add(registry, "Gelu", 20, _gelu)
    for version in (18, 22):
        _add(registry, "Mish", version, _mish)
    for version in (23, 24, 25):
        _add(registry, "Attention", version, _attention)
    _registered = True


def _add(registry: Any, op: str, version: int, converter: Any) -> None:
    key = registry.OperationDescription(domain="", operation_type=op, version=version)
    if key not in registry._CONVERTER_REGISTRY:
        registry.add_converter(op, version)(converter)


def _alias(registry: Any, op: str, version: int, *, guard: Any) -> None:
    """Register the converter of ``op``'s latest known version < ``version`` for ``version``."""
    known = [d.version for d in registry._CONVERTER_REGISTRY
             if d.operation_type == op and d.domain == "" and d.version < version]
    if not known:
        return
    base = registry._CONVERTER_REGISTRY[
        registry.OperationDescription(domain="", operation_type=op, version=max(known))]

    def converter(node: Any, graph: Any) -> Any:
        reason = guard(node) if guard else False
        if reason:
            raise NotImplementedError(f"{op} with {reason} is not implemented")
        return base(node, graph)

    _add(registry, op, version, converter)


def _reduce_with_axes_input(node: Any, graph: Any) -> Any:
    """Reduce* from opset 18 on: ``axes`` is an input; supported when it is a constant."""
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = get_const_value(node.input_values[1], graph).tolist()
        except KeyError:
            raise NotImplementedError(f"{node.operation_type} with computed axes") from None
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        raise NotImplementedError(f"{node.operation_type} with noop_with_empty_axes=1")
    module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes,
                                  keepdims=node.attributes.get("keepdims", 1))
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=(node.input_values[0],), outputs=node.output_values))


def _gelu(node: Any, graph: Any) -> Any:
    """Gelu (opset 20) is nn.GELU with the same ``approximate`` attribute."""
    import torch
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    approximate = node.attributes.get("approximate", "none")
    return OperationConverterResult(torch_module=torch.nn.GELU(approximate=approximate),
                                    onnx_mapping=onnx_mapping_from_node(node=node))


def _mish(node: Any, graph: Any) -> Any:
    """Mish (opset 18) is nn.Mish."""
    import torch
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    return OperationConverterResult(torch_module=torch.nn.Mish(),
                                    onnx_mapping=onnx_mapping_from_node(node=node))


def _attention(node: Any, graph: Any) -> Any:
    """Attention (opset 23, what torch's exporter writes for SDPA from opset 23 on) as
    scaled_dot_product_attention; a KV cache, softcap or extra outputs are refused."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from core.artifacts._convert_modules import OnnxAttention

    attrs = node.attributes
    if any(node.input_values[4:]) or any(node.output_values[1:]):
        raise NotImplementedError("Attention with a KV cache or extra outputs")
    if attrs.get("softcap", 0.0) or attrs.get("qk_matmul_output_mode", 0):
        raise NotImplementedError("Attention with softcap or qk_matmul_output_mode")
    if attrs.get("left_window_size", -1) >= 0 or attrs.get("right_window_size", -1) >= 0:
        raise NotImplementedError("Attention with a sliding window")
    causal = bool(attrs.get("is_causal", 0))
    if causal and len(node.input_values) > 3 and node.input_values[3]:
        raise NotImplementedError("Attention with both is_causal and attn_mask")
    module = OnnxAttention(is_causal=causal, scale=attrs.get("scale"),
                           q_heads=attrs.get("q_num_heads", 0),
                           kv_heads=attrs.get("kv_num_heads", 0))
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
        inputs=node.input_values[:4], outputs=node.output_values[:1]))


def _data_input(model: Any) -> Any:
    """The graph's data input (old exports also list their weights as inputs)."""
    weights = {i.name for i in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in weights)


def _require_float32_input(model: Any, name: str) -> None:
    """Torch methods train and measure in float32: a half-precision input is refused here,
    before the converted module meets float32 rows (torch's dtype errors named no cause)."""
    from onnx import TensorProto

    inp = _data_input(model)
    elem = inp.type.tensor_type.elem_type
    if elem in (TensorProto.FLOAT16, TensorProto.BFLOAT16):
        raise UnsupportedModelError(
            f"'{name}' takes {TensorProto.DataType.Name(elem).lower()} input '{inp.name}': "
            "torch methods (pruning, factorization, distillation, torch-* quantization) "
            "work on a float32 model. Use its float32 export; ONNX Runtime methods "
            "measure this file as it is.")


def _fixed_batch(model: Any) -> int | None:
    """The batch size written into the graph's input, or None when it is dynamic."""
    dims = _data_input(model).type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
        return int(dims[0].dim_value)
    return None


def _free_batch_in_reshapes(model: Any, batch: int) -> None:
    """Constant Reshape targets that start with the fixed batch copy it from the input instead
    (0), and ``[batch, n]`` becomes ``[0, -1]``, so flatten-like reshapes survive pruning."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    first_dim = {vi.name: vi.type.tensor_type.shape.dim[0].dim_value
                 for vi in [*inferred.graph.value_info, *inferred.graph.input]
                 if vi.type.tensor_type.shape.dim}
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        target = numpy_helper.to_array(inits[node.input[1]])
        if (target.ndim != 1 or target.size < 2 or int(target[0]) != batch
                or first_dim.get(node.input[0]) != batch
                or any(a.name == "allowzero" and a.i for a in node.attribute)):  # 0 literal
            continue
        new = [0, -1] if target.size == 2 else [0, *target[1:].tolist()]
        name = f"{node.input[1]}__batch_free_{len(new)}_{'_'.join(map(str, new))}"
        if name not in inits:
            inits[name] = numpy_helper.from_array(np.asarray(new, dtype=np.int64), name)
            model.graph.initializer.append(inits[name])
        node.input[1] = name


def _constant_arrays(model: Any) -> dict[str, Any]:
    """Initializers and Constant-node values by name, as numpy arrays."""
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def _is_flatten(dims: list[int | None] | None, target: list[int], *, allowzero: bool) -> bool:
    """Whether Reshape(x of shape ``dims``, ``target``) is ``flatten(x, 1)`` at that shape."""
    if not dims or len(dims) < 3 or len(target) != 2:
        return False
    rest = dims[1:]
    if any(d is None or d <= 0 for d in rest):
        return False
    first, second = target
    copies_first = (first == 0 and not allowzero) or (bool(dims[0]) and first == dims[0])
    if second == int(np.prod(rest)):
        return first == -1 or copies_first
    return second == -1 and copies_first


def _flatten_reshapes(model: Any) -> None:
    """A constant Reshape that flattens (N, C, H, W) into (N, C·H·W) becomes Flatten(axis=1),
    i.e. ``nn.Flatten``: it runs at any batch and Torch-Pruning follows it into the classifier
    (a target such as ``[-1, 512]``, what a fixed-batch export made dynamic holds, hard-codes
    the width, so pruning the last convolution broke the classifier)."""
    import onnx
    from onnx import helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else None
                        for d in vi.type.tensor_type.shape.dim]
              for vi in [*inferred.graph.value_info, *inferred.graph.input]
              if vi.type.tensor_type.HasField("shape")}
    consts = _constant_arrays(model)
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        target = consts[node.input[1]]
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if target.ndim != 1 or not _is_flatten(shapes.get(node.input[0]), target.tolist(),
                                               allowzero=allowzero):
            continue
        model.graph.node.remove(node)
        model.graph.node.insert(index, helper.make_node(
            "Flatten", [node.input[0]], list(node.output), name=node.name, axis=1))


def _keep_output(model: Any, output_name: str, name: str) -> None:
    outputs = [o for o in model.graph.output if o.name == output_name]
    if not outputs:
        names = ", ".join(o.name for o in model.graph.output)
        raise UnsupportedModelError(f"'{name}' has no output '{output_name}' (its outputs: "
                                    f"{names}).")
    del model.graph.output[:]
    model.graph.output.extend(outputs)


def _drop_needless_allowzero(model: Any) -> None:
    """torch's dynamo exporter writes Reshape(allowzero=1); with no 0 in a constant target it
    means the same as allowzero=0, the only form onnx2torch converts."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if 0 in numpy_helper.to_array(inits[node.input[1]]).tolist():
            continue
        for attr in [a for a in node.attribute if a.name == "allowzero"]:
            node.attribute.remove(attr)


def _trim_empty_outputs(model: Any) -> None:
    """Drop omitted trailing optional outputs (""): onnx2torch treats a node with several
    outputs as returning a tuple."""
    for node in model.graph.node:
        while len(node.output) > 1 and not node.output[-1]:
            node.output.pop()


def _unshare_identity_initializers(model: Any) -> None:
    """torch's legacy exporter stores equal weights once behind Identity nodes (e.g. every
    LayerNorm's ones); each user gets its own copy again, so they train apart and the
    converter sees constant weights (an nn.LayerNorm, not a functional call)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type != "Identity" or node.input[0] not in inits:
            continue
        if node.output[0] in {o.name for o in model.graph.output}:
            continue
        copy = numpy_helper.to_array(inits[node.input[0]]).copy()
        model.graph.initializer.append(numpy_helper.from_array(copy, node.output[0]))
        model.graph.node.remove(node)


def _float_initializers_trainable(module: torch.nn.Module) -> None:
    """onnx2torch keeps weights that feed plain ops (MatMul, Add, Mul) as buffers: float
    tensors larger than a scalar are weights (positional embeddings, MatMul weights, biases),
    so they become parameters; scalars (scales, epsilons) and integer shapes stay buffers."""
    import torch

    holder = getattr(module, "initializers", None)
    if holder is None:
        return
    for key, buf in list(holder._buffers.items()):
        if buf is not None and buf.is_floating_point() and buf.numel() > 1:
            del holder._buffers[key]
            holder.register_parameter(key, torch.nn.Parameter(buf.detach().clone()))


def _static_reshapes(module: Any) -> None:
    """Replace onnx2torch Reshape calls whose target is a constant by :class:`StaticReshape`,
    and those whose target is another tensor's whole Shape (GroupNorm's legacy export) by
    :class:`ReshapeLike`: onnx2torch reads the target tensor at run time, which export refuses."""
    import torch
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape

    from core.artifacts._convert_modules import ReshapeLike, StaticReshape

    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or len(node.args) != 2 or node.kwargs:
            continue
        if not isinstance(module.get_submodule(node.target), OnnxReshape):
            continue
        shape_node = node.args[1]
        shape = _constant_value(module, shape_node)
        if shape is None and getattr(shape_node, "op", None) == "call_module":
            whole = module.get_submodule(shape_node.target)
            if isinstance(whole, OnnxShape) and whole._start == 0 and whole._end is None \
                    and len(shape_node.args) == 1 and not shape_node.kwargs:
                module.add_submodule(node.target, ReshapeLike())
                node.args = (node.args[0], shape_node.args[0])
                changed = True
            continue
        if not torch.is_tensor(shape) or shape.is_floating_point() or shape.dim() != 1:
            continue
        module.add_submodule(node.target, StaticReshape(shape.tolist()))
        node.args = (node.args[0],)
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        module.recompile()


def _constant_value(module: Any, node: Any) -> Any:
    """The tensor an fx node always yields (an attribute or onnx2torch's Constant), or None."""
    from onnx2torch.node_converters.constant import OnnxConstant

    if getattr(node, "op", None) == "get_attr":
        return _fetch_attr(module, node.target)
    if getattr(node, "op", None) == "call_module" and not node.args:
        constant = module.get_submodule(node.target)
        return constant.value if isinstance(constant, OnnxConstant) else None
    return None


def _static_resizes(module: Any) -> None:
    """Replace onnx2torch Resize calls with constant scales or sizes, which keep the batch
    and channel dims, by :class:`StaticResize` (the same F.interpolate call)."""
    import torch
    from onnx2torch.node_converters.resize import OnnxResize, _onnx_mode_to_torch_mode

    from core.artifacts._convert_modules import StaticResize

    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target),
                                                      OnnxResize):
            continue
        resize = module.get_submodule(node.target)
        names = ("input_tensor", "roi", "scales", "sizes")
        given = {**dict(zip(names, node.args)), **node.kwargs}
        values = {k: _constant_value(module, v) for k, v in given.items() if k != "input_tensor"}
        if any(v is None or not torch.is_tensor(v) for v in values.values()):
            continue  # computed at run time: onnx2torch's module stays
        if values.get("roi") is not None and values["roi"].numel() and not resize.ignore_roi:
            continue
        scales, sizes = values.get("scales"), values.get("sizes")
        scales = scales.tolist() if scales is not None and scales.numel() else None
        sizes = [int(s) for s in sizes.tolist()] if sizes is not None and sizes.numel() else None
        if (scales or sizes) is None or (scales and scales[:2] != [1, 1]):
            continue
        rank = len(scales or sizes) - 2
        static = StaticResize(_onnx_mode_to_torch_mode(resize.onnx_mode, rank),
                              resize.align_corners, scales=scales[2:] if scales else None,
                              sizes=None if scales else sizes[2:])
        module.add_submodule(node.target, static)
        node.args, node.kwargs = (given["input_tensor"],), {}
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        module.recompile()


def _drop_unused_nodes(module: Any) -> None:
    """Remove what no kept output reads (e.g. an auxiliary head once ``output_name`` keeps
    the scores): structured pruning traces from the outputs, so such a layer kept its width
    and broke the forward."""
    if module.graph.eliminate_dead_code():
        module.delete_all_unused_submodules()
        module.recompile()


def _closing_softmax_trains_on_log_probs(module: Any) -> int:
    """Each Softmax whose result is only a graph output becomes :class:`ClosingSoftmax`
    (log-probabilities while training, probabilities in eval and export). Returns how many."""
    import torch
    from onnx2torch.node_converters.activations import OnnxSoftmaxV1V11

    from core.artifacts._convert_modules import ClosingSoftmax

    output = next(n for n in module.graph.nodes if n.op == "output")
    produced = output.args[0] if isinstance(output.args[0], (tuple, list)) else [output.args[0]]
    replaced = 0
    for node in produced:
        if getattr(node, "op", None) != "call_module" or len(node.users) != 1:
            continue  # also read inside the graph (e.g. by an ArgMax label): left as it is
        softmax = module.get_submodule(node.target)
        if isinstance(softmax, torch.nn.Softmax):
            log_softmax: Any = torch.nn.LogSoftmax(dim=softmax.dim)
        elif isinstance(softmax, OnnxSoftmaxV1V11) and not softmax.is_log:
            log_softmax = OnnxSoftmaxV1V11(axis=softmax.axis, is_log=True)
        else:
            continue
        module.add_submodule(node.target, ClosingSoftmax(softmax, log_softmax))
        replaced += 1
    if replaced:
        module.recompile()
    return replaced


def _fetch_attr(module: Any, target: str) -> Any:
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _unsupported_ops(model: Any) -> list[str]:
    """Operators of ``model`` that no registered converter handles, as 'Op (opset N)'."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing: list[str] = []
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, opsets.get(domain, 1), domain)
        except NotImplementedError:
            label = f"{domain + '.' if domain else ''}{node.op_type} (opset {opsets.get(domain)})"
            if label not in missing:
                missing.append(label)
    return missing


def onnx_to_torch(source: str | Path | Any, *, output_name: str | None = None,
                  name: str | None = None, verify: bool = True) -> Any:
    """A trainable ``torch.nn.Module`` (a ``torch.fx.GraphModule``) computing an ONNX graph.

    ``source`` is an ``.onnx`` path (external data beside it) or an ``onnx.ModelProto``;
    ``output_name`` keeps only that graph output (e.g. the scores of a model that also outputs
    a label), else the module returns every output.
    A graph whose batch size is fixed runs on any number of rows (see :class:`FixedBatch`).
    Operators the converter does not cover raise one :class:`UnsupportedModelError` naming them.
    With ``verify`` the module is compared with ONNX Runtime on random rows (when the input
    shape is fully known) and a conversion that is not exact raises too.
    """
    import onnx

    from core.artifacts._convert_modules import FixedBatch
    from core.artifacts._dense import contiguous_linear_weights, dense_layers_as_gemm
    from core.artifacts._load import check_onnx

    _register_newer_opsets()
    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        check_onnx(source)  # the studio's gate: valid graph, external data only beside it
        model = onnx.load(str(source))
    else:
        model = onnx.ModelProto()
        model.CopyFrom(source)
    name = name or "the ONNX model"
    _require_float32_input(model, name)
    if output_name is not None:
        _keep_output(model, output_name, name)
    _drop_needless_allowzero(model)
    _flatten_reshapes(model)
    _trim_empty_outputs(model)
    _unshare_identity_initializers(model)
    batch = _fixed_batch(model)
    if batch:
        _free_batch_in_reshapes(model, batch)
    dense_layers_as_gemm(model)  # converters' MatMul (+ Add) Dense layers become nn.Linear
    missing = _unsupported_ops(model)
    if missing:
        raise UnsupportedModelError(
            f"'{name}' cannot be turned into a trainable torch module: no converter for "
            f"operator(s) {', '.join(missing)}. Structured pruning, QAT and distillation from "
            "this model need a model without them; ONNX Runtime methods still apply.")
    from onnx2torch import convert

    try:
        module = convert(model)
    except Exception as exc:
        text = re.sub(r"\s+", " ", str(exc)).strip()[:200] or type(exc).__name__
        raise UnsupportedModelError(
            f"'{name}' cannot be turned into a trainable torch module: {text}.") from None
    _float_initializers_trainable(module)
    contiguous_linear_weights(module)
    _static_reshapes(module)
    _static_resizes(module)
    _drop_unused_nodes(module)
    _closing_softmax_trains_on_log_probs(module)
    module.train()
    if batch and not _runs_on_other_batches(module, model, batch):
        module = FixedBatch(module, batch)
    if verify:
        reference = str(source) if isinstance(source, (str, Path)) else source
        _verify_conversion(module, reference, model, output_name=output_name, name=name)
    return module


def _verify_conversion(module: torch.nn.Module, reference: Any, model: Any, *,
                       output_name: str | None, name: str) -> None:
    """Raise unless ``module`` matches ONNX Runtime on the original graph (random rows)."""
    from onnx import TensorProto

    tensor_type = _data_input(model).type.tensor_type
    shape = [d.dim_value for d in list(tensor_type.shape.dim)[1:]]
    if tensor_type.elem_type != TensorProto.FLOAT or any(s <= 0 for s in shape):
        return  # no rows to make up; callers check on real rows with check_parity
    batch = _fixed_batch(model) or 2
    X = np.random.default_rng(0).standard_normal((2 * batch + 1, *shape)).astype(np.float32)
    ref = _ort_outputs(_reference_session(reference), X, output_name)
    try:
        got = _module_outputs(module, X)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # a converted op that
        text = re.sub(r"\s+", " ", str(exc)).strip()[:200]  # cannot run (e.g. unknown dims)
        raise UnsupportedModelError(
            f"'{name}' cannot be turned into a trainable torch module: the converted module "
            f"fails to run ({text}). ONNX Runtime methods still apply.") from None
    scale = max([1.0, *(float(np.abs(r).max()) for r in ref if r.dtype.kind == "f")])
    diff = _max_diff(ref, got)
    if not diff <= 1e-4 * scale:
        raise UnsupportedModelError(
            f"'{name}' converted to torch disagrees with ONNX Runtime by up to {diff:.3g} on "
            "random inputs; the conversion is not exact for this model.")


def _reference_session(reference: Any) -> Any:
    """An ORT session over a path, or over a ModelProto's bytes."""
    import onnxruntime as ort

    from core.measure import ort_session

    if isinstance(reference, str):
        return ort_session(reference)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(reference.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _runs_on_other_batches(module: Any, model: Any, batch: int) -> bool:
    """Whether ``module`` gives the same rows at batch ``batch + 1`` as at ``batch``, one
    output row per input row (a constant Gather, as the dynamo exporter writes a flatten,
    kept the first ``batch`` rows only)."""
    import torch

    from core.artifacts._convert_modules import outputs_of

    dims = _data_input(model).type.tensor_type.shape.dim
    shape = [d.dim_value for d in list(dims)[1:]]
    if any(s <= 0 for s in shape):
        return False
    x = torch.randn(batch + 1, *shape, generator=torch.Generator().manual_seed(0))
    module.eval()
    try:
        with torch.inference_mode():
            ref, got = outputs_of(module(x[:batch])), outputs_of(module(x))
        return all(len(g) == batch + 1 and torch.allclose(r, g[:batch], atol=1e-5, rtol=1e-4)
                   for r, g in zip(ref, got))
    except Exception:
        return False
    finally:
        module.train()


def trainable_module(loaded: Any) -> torch.nn.Module:
    """The torch module to train/prune/quantize for a :class:`LoadedModel`: its own module
    for torch kinds, a converted one (:func:`onnx_to_torch`) for ONNX."""
    if loaded.kind != "onnx":
        return loaded.model
    return onnx_to_torch(loaded.path, output_name=loaded.meta.get("output_name"),
                         name=Path(loaded.path).name)


def onnx_parity(module: torch.nn.Module, onnx_file: str | Path, X: np.ndarray) -> float:
    """Max |torch − ONNX Runtime| over every float output on rows ``X`` (fixed-batch files
    are fed in chunks of their batch size)."""
    from core.measure import ort_session

    X = np.asarray(X, dtype=np.float32)
    return _max_diff(_ort_outputs(ort_session(onnx_file), X), _module_outputs(module, X))


def _ort_outputs(session: Any, X: np.ndarray, output_name: str | None = None) -> list[Any]:
    feed = session.get_inputs()[0]
    fixed = feed.shape[0] if isinstance(feed.shape[0], int) and feed.shape[0] > 0 else None
    batch = fixed or len(X)
    names = [output_name] if output_name else None
    parts = []
    for start in range(0, len(X), batch):
        part = X[start:start + batch]
        padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)])
        parts.append([o[:len(part)] for o in session.run(names, {feed.name: padded})])
    return [np.concatenate(outs) for outs in zip(*parts)]


def _module_outputs(module: torch.nn.Module, X: np.ndarray) -> list[Any]:
    import torch

    from core.artifacts._convert_modules import outputs_of

    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            return [o.detach().numpy() for o in outputs_of(module(torch.from_numpy(X)))]
    finally:
        module.train(was_training)


def _max_diff(reference: list[Any], got: list[Any]) -> float:
    """Max |reference − got| over float outputs; inf when shapes or counts differ."""
    if len(reference) != len(got):
        return float("inf")
    diffs = []
    for ref, out in zip(reference, got):
        if ref.shape != out.shape:
            return float("inf")
        if ref.dtype.kind == "f":
            diffs.append(float(np.abs(ref.astype(np.float64) - out).max()))
        elif not np.array_equal(ref, out):
            return float("inf")
    return max(diffs) if diffs else float("inf")


def check_parity(module: torch.nn.Module, onnx_file: str | Path, X: np.ndarray, *,
                 tolerance: float = 1e-4, what: str = "the torch module") -> float:
    """:func:`onnx_parity`, raising :class:`UnsupportedModelError` above ``tolerance``."""
    diff = onnx_parity(module, onnx_file, X)
    if not diff <= tolerance:
        raise UnsupportedModelError(
            f"'{Path(onnx_file).name}' and {what} disagree by up to {diff:.3g} on {len(X)} rows "
            f"(the 'tolerance' is {tolerance:g}); the conversion is not exact for this model.")
    return diff


@dataclass(frozen=True)
class ExportCheck:
    """What :func:`export_checked` wrote: max |ORT − torch| and the batch size the ONNX file
    is fixed at (None: any batch)."""

    max_abs_diff: float
    fixed_batch: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"onnx_parity_max_abs_diff": self.max_abs_diff, "fixed_batch": self.fixed_batch}


def export_checked(module: torch.nn.Module, path: str | Path, X: np.ndarray, *,
                   tolerance: float = 1e-4) -> ExportCheck:
    """Export ``module`` to ONNX and check it with ONNX Runtime on the rows ``X``.

    A dynamic batch is tried first; a converted graph whose shape arithmetic was traced as
    constants then disagrees at other batch sizes, and is exported at a fixed batch instead
    (its :class:`FixedBatch` size, else 1). Above ``tolerance`` it raises.
    """
    import torch

    from core.artifacts._convert_modules import FixedBatch
    from core.artifacts._save import export_onnx

    X = np.asarray(X, dtype=np.float32)
    was_training = module.training
    try:
        if not isinstance(module, FixedBatch):
            try:
                export_onnx(module, path, torch.from_numpy(X[:1]), check_inputs=X[:1])
                diff = onnx_parity(module, path, X)
            except Exception:  # ORT refuses another batch size: shapes were traced as constants
                diff = float("inf")
            if diff <= tolerance:
                return ExportCheck(diff, None)
        inner = module.inner if isinstance(module, FixedBatch) else module
        rows = module.batch if isinstance(module, FixedBatch) else 1
        _export_fixed_batch(inner, path, torch.from_numpy(np.resize(X, (rows, *X.shape[1:]))))
    finally:
        module.train(was_training)
    diff = check_parity(module, path, X, tolerance=tolerance, what="the exported torch module")
    return ExportCheck(diff, rows)


def _export_fixed_batch(module: torch.nn.Module, path: str | Path, example: torch.Tensor) -> None:
    import warnings

    import torch

    module.eval()
    try:
        with warnings.catch_warnings():
            # the tracer's guesses about Python values (the converted graph is verified after)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # legacy exporter: 15-32x faster here than dynamo=True (see core/artifacts/_save.py)
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["logits"])
    except Exception as exc:
        Path(path).unlink(missing_ok=True)
        raise UnsupportedModelError(
            f"The converted model cannot be exported back to ONNX: "
            f"{str(exc).splitlines()[0][:200]}") from None
