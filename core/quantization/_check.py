"""Never a silent no-op: which model kinds a method applies to, and proof that it quantized.

A method refuses an input kind it cannot handle before any work, and its artifact is
checked afterwards for quantized operators (ONNX QDQ / QLinear / integer / n-bit nodes,
FP16 weights; PT2E quantize/dequantize ops in a ``.pt2`` graph, or low-precision weights).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import UnsupportedModelError

# Input kinds: a built-in run folder, a live nn.Module (Python API), an ONNX file, a
# TorchScript .pt or a torch.export .pt2 (core.artifacts.LoadedModel.kind).
KINDS = ("builtin", "module", "onnx", "torchscript", "export")
_ORT_KINDS = ("builtin", "module", "onnx", "torchscript")
# An ONNX input reaches torch-* methods as a trainable module (core.artifacts.onnx_to_torch,
# its outputs verified against ONNX Runtime before use).
_TORCH_KINDS = ("builtin", "module", "onnx")

ONNX_QUANT_OPS = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "ConvInteger", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
}

_KIND_NAMES = {"onnx": "an ONNX model", "torchscript": "a TorchScript model",
               "export": "a torch.export (.pt2) model", "builtin": "a built-in model",
               "module": "a PyTorch module"}


def method_kinds(method: str) -> tuple[str, ...]:
    """The input kinds a registered quantization method applies to."""
    return _ORT_KINDS if method.startswith("ort-") else _TORCH_KINDS


# What a command-line user passes as --model for each input kind (a live module is Python only).
CLI_KIND_NAMES = {"builtin": "a built-in run folder", "onnx": ".onnx",
                  "torchscript": "TorchScript .pt", "export": ".pt2"}


def method_kinds_help() -> str:
    """``--method``'s help: the model files each method family takes, read from method_kinds."""
    def names(method: str) -> str:
        return ", ".join(CLI_KIND_NAMES[k] for k in method_kinds(method) if k in CLI_KIND_NAMES)

    return (f"ort-* take {names('ort-')}; torch-* take {names('torch-')} (an .onnx is "
            "converted to torch, its outputs checked against ONNX Runtime)")


def applicable_methods(kind: str) -> list[str]:
    """The registered quantization methods that apply to an input of this kind."""
    from core.quantization._base import AREA
    from core.registry import list_methods

    return [m for m in list_methods(AREA) if kind in method_kinds(m)]


def check_applies(method: str, kind: str) -> None:
    """Refuse, before any work, a method that cannot apply to this kind of model."""
    if kind in method_kinds(method):
        return
    what = _KIND_NAMES.get(kind, kind)
    if kind == "export":
        raise UnsupportedModelError(
            f"'{method}' cannot quantize {what}: torch methods need the eager nn.Module and "
            "ort-* methods need an ONNX file. Export the model to ONNX "
            "(torch.onnx.export(model, (x,), 'model.onnx')) and use ort-static-int8, or pass "
            "the nn.Module through the Python API for torch-* methods.")
    others = ", ".join(applicable_methods(kind)) or "none"
    raise UnsupportedModelError(
        f"'{method}' cannot quantize {what}: it needs a torch form (a built-in model, an "
        f"nn.Module passed through the Python API, or an .onnx export, which is converted). "
        f"For {what} use one of: {others}.")


def _onnx_evidence(path: Path) -> str | None:
    from onnx import TensorProto

    from core.artifacts._onnx import read_graph

    model = read_graph(path)
    ops = sorted({n.op_type for n in model.graph.node
                  if n.op_type in ONNX_QUANT_OPS or n.op_type.startswith("QLinear")})
    if ops:
        return f"quantized operators {ops}"
    low = [i.name for i in model.graph.initializer
           if i.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    return f"{len(low)} half-precision weight tensor(s)" if low else None


_PT2_QUANT_NAMESPACES = ("quantized_decomposed", "onednn", "torchao")


def _export_evidence(path: Path) -> str | None:
    """Quantize/dequantize (PT2E) or oneDNN quantized ops in a .pt2 graph, or half weights."""
    import torch

    from core.artifacts._inspect import load_pt2_safely

    program = load_pt2_safely(path)
    ops = sorted({str(n.target) for n in program.graph.nodes if n.op == "call_function"
                  and str(n.target).split(".")[0] in _PT2_QUANT_NAMESPACES})
    if ops:
        return f"quantized operators {ops}"
    tensors = [*program.state_dict.values(), *program.constants.values()]
    low = sum(isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16)
              for t in tensors)
    return f"{low} half-precision weight tensor(s)" if low else None


def quantization_evidence(path: str | Path) -> str | None:
    """What in the artifact shows it was quantized, or None when nothing does."""
    path = Path(path)
    if path.suffix == ".onnx":
        return _onnx_evidence(path)
    return _export_evidence(path) if path.suffix == ".pt2" else None


_NOTHING_TO_DO = {
    "ort-static-int8": "it found no Conv, MatMul or Gemm layer with constant weights",
    "ort-dynamic-int8": "it quantizes MatMul/Gemm layers (convolutions with quantize_conv) and "
                        "found none",
    "ort-int4": "it quantizes MatMul/Gemm weights only and found none",
    "ort-fp16": "no weight was converted to float16",
    "torch-dynamic-int8": "it quantizes nn.Linear modules and found none",
    "torch-static-int8": "X86InductorQuantizer found no Conv2d/Linear layer to quantize",
    "torch-qat-int8": "X86InductorQuantizer found no Conv2d/Linear layer to quantize",
}


def require_quantized(path: str | Path, method: str, *, kept_float: list[str] | None = None
                      ) -> str:
    """The evidence that ``method`` changed the model; a clear error when it did nothing."""
    found = quantization_evidence(path)
    if found is not None and ("operators" in found or "int" not in method):
        return found  # an INT8/INT4 method shows quantized operators, not a half model's weights
    if kept_float:
        why = (f"every quantized layer had to stay in float to meet the tolerance "
               f"({', '.join(kept_float)}); raise the tolerance or use another method")
    else:
        why = _NOTHING_TO_DO.get(method, "the artifact has no quantized operators or "
                                 "low-precision weights")
        if method != "ort-static-int8":
            why += "; ort-static-int8 quantizes convolutions and linear layers"
    raise UnsupportedModelError(f"'{method}' did nothing on this model: {why}.")
