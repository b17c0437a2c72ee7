"""ONNX Runtime methods: static INT8 (QDQ), dynamic INT8, FP16 and weight-only INT4."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from core.callbacks import Callbacks
from core.isolation import survives
from core.measure import ort_session
from core.quantization._base import Quantized, Source, copy_file, quant_method, selected
from core.quantization._config import (
    OrtDynamicInt8Config,
    OrtFp16Config,
    OrtInt4Config,
    OrtStaticInt8Config,
)

WEIGHT_OPS = ("Conv", "MatMul", "Gemm")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ORT's quantization logging and prints while it works (warnings still show)."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


# --- graph preparation --------------------------------------------------------------------
def _preprocessed(source: Source) -> Path:
    """quant_pre_process (shape inference + basic optimisation) of the FP32 model, cached.

    ONNX's own shape inference first: ORT's symbolic shape inference imports sympy and torch
    (seconds) and adds nothing where every tensor's shape is already known; it runs only
    where some shape is left open (e.g. attention reshapes).
    """
    if "pre" not in source.cache:
        fp32 = source.fp32_onnx()
        out = source.scratch / "fp32-pre.onnx"
        source.cache["pre"] = fp32  # symbolic shape inference can fail on unusual graphs
        if _pre_process(fp32, out, symbolic=False) and _shapes_complete(out):
            source.cache["pre"] = out
        elif _pre_process(fp32, out, symbolic=True):
            source.cache["pre"] = out
    return source.cache["pre"]


def _pre_process(fp32: Path, out: Path, *, symbolic: bool) -> bool:
    """ORT's quant_pre_process of ``fp32`` into ``out``; False where it fails.

    The symbolic form runs in a child process whose folder is ``out``'s: where it fails,
    ORT's symbolic shape inference saves ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data``
    into the current folder (the server's, the user's), and a folder is per process.
    """
    if symbolic:
        import subprocess
        import sys

        code = ("import sys; from onnxruntime.quantization.shape_inference import "
                "quant_pre_process as q; q(sys.argv[1], sys.argv[2], skip_symbolic_shape=False)")
        done = subprocess.run([sys.executable, "-c", code, str(Path(fp32).resolve()),
                               str(Path(out).resolve())], cwd=Path(out).parent,
                              capture_output=True, timeout=3600, check=False)
        return done.returncode == 0
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet():
            quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
        return True
    except Exception:
        return False


def _shapes_complete(path: Path) -> bool:
    """Whether every node output has a shape whose dimensions are all numbers or the graph
    inputs' named dimensions (then symbolic shape inference has nothing to add)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    named = {d.dim_param for v in graph.input for d in v.type.tensor_type.shape.dim
             if d.dim_param}
    known = {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}
    for name in (o for node in graph.node for o in node.output if o):
        kind = known.get(name)
        if kind is None or not kind.tensor_type.HasField("shape"):
            return False
        if any(not d.HasField("dim_value") and d.dim_param not in named
               for d in kind.tensor_type.shape.dim):
            return False
    return True


def gemm_to_matmul(model: Any) -> Any:
    """Rewrite ``Gemm(A, W, b)`` with a constant W as ``MatMul(A, Wᵀ) + b`` (in place).

    ORT's dynamic INT8 and MatMulNBits quantize MatMul, not Gemm. The MatMul keeps the
    Gemm's node name so that layer names stay the same.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    new_nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        ok = (node.op_type == "Gemm" and node.input[1] in inits and attrs.get("transA", 0) == 0
              and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0)
        if not ok:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        w = w.T if attrs.get("transB", 0) else w
        w_name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out],
                                          name=node.name))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                              name=f"{node.name}_bias"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return model


def _matmul_form(source: Source) -> Path:
    """The pre-processed FP32 model with its Gemm layers rewritten as MatMul, cached."""
    if "matmul" not in source.cache:
        import onnx

        model = gemm_to_matmul(onnx.load(str(_preprocessed(source))))
        out = source.scratch / "fp32-matmul.onnx"
        onnx.save(model, str(out))
        source.cache["matmul"] = out
    return source.cache["matmul"]


def weight_layers(path: Path, op_types: Sequence[str] = WEIGHT_OPS) -> list[str]:
    """Names of the nodes of ``op_types`` that carry a constant weight (the "layers")."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits and n.name]


def _static_layers(source: Source, config: Any) -> list[str]:
    return weight_layers(_preprocessed(source))


def _matmul_layers(source: Source, config: Any) -> list[str]:
    return weight_layers(_matmul_form(source), ("MatMul",))


def _dynamic_layers(source: Source, config: Any) -> list[str]:
    ops = ("MatMul", "Conv") if getattr(config, "quantize_conv", False) else ("MatMul",)
    return weight_layers(_matmul_form(source), ops)


def _fp32_layers(source: Source, config: Any) -> list[str]:
    return weight_layers(source.fp32_onnx())


def _conv_count(path: Path) -> int:
    import onnx

    return sum(n.op_type in ("Conv", "ConvTranspose") for n in onnx.load(str(path)).graph.node)


def _isa_text() -> str:
    from core.measure import isa_text

    return isa_text()


# --- static INT8 --------------------------------------------------------------------------
class _Reader:
    """Calibration batches for ORT (a CalibrationDataReader)."""

    def __init__(self, X: np.ndarray, input_name: str, batch_size: int = 32,
                 callbacks: Callbacks | None = None) -> None:
        # Whole batches only: a fixed-batch model accepts no other size, and ORT's entropy
        # and percentile calibrators fail on a short last batch. The tail is padded with
        # rows from the start.
        from core.measure import batch_of

        n = -(-len(X) // batch_size) * batch_size
        X = batch_of(X, n) if n != len(X) else X
        self.batches = [X[i : i + batch_size] for i in range(0, len(X), batch_size)]
        self.input_name = input_name
        self.callbacks = callbacks
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        if self.callbacks is not None:
            self.callbacks.progress(0.8 * self.i / len(self.batches),
                                    f"Calibrating ({self.i + 1}/{len(self.batches)} batches)")
        batch = self.batches[self.i]
        self.i += 1
        return {self.input_name: batch}

    def rewind(self) -> None:
        self.i = 0

    def __len__(self) -> int:
        return len(self.batches)


def _input_name(path: Path) -> str:
    """The float32 input that calibration feeds; any other input type is refused clearly
    (ORT's static quantizer writes an invalid graph for a float16 model)."""
    import onnx

    from core.errors import UnsupportedModelError

    inp = onnx.load(str(path), load_external_data=False).graph.input[0]
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise UnsupportedModelError(
            f"ort-static-int8 calibrates a float32 model; this one takes "
            f"{onnx.TensorProto.DataType.Name(elem).lower()} input '{inp.name}'. Quantize its "
            "float32 export instead.")
    return inp.name


def _refuse_half_input(path: Path, method: str) -> None:
    """A float16/bfloat16 graph has no float32 weight for ORT's weight quantizers, which
    then did nothing; say why instead (integer inputs, e.g. token ids, stay welcome)."""
    import onnx

    from core.errors import UnsupportedModelError

    inp = onnx.load(str(path), load_external_data=False).graph.input[0]
    elem = inp.type.tensor_type.elem_type
    if elem in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
        raise UnsupportedModelError(
            f"{method} quantizes a float32 model; this one takes "
            f"{onnx.TensorProto.DataType.Name(elem).lower()} input '{inp.name}'. Quantize its "
            "float32 export instead.")


def _calibration_batch(path: Path) -> int:
    """The model's fixed batch size, else 32 rows per calibration batch."""
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape
    first = dim.dim[0] if dim.dim else None
    return first.dim_value if first is not None and first.dim_value > 0 else 32


def _as_reader(reader: _Reader) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def get_next(self):  # noqa: D401
            return reader.get_next()

        def rewind(self):
            reader.rewind()

        def __len__(self):
            return len(reader)

    return Reader()


@quant_method("ort-static-int8", config=OrtStaticInt8Config, layers=_static_layers,
              artifact="model.onnx",
              summary="ONNX Runtime static INT8 (QDQ), calibrated on the train split")
def ort_static_int8(source: Source, config: OrtStaticInt8Config, out_path: Path, *,
                    include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                    callbacks: Callbacks | None = None) -> Quantized:
    """Static INT8 in QDQ format; calibration ranges are computed once and cached."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    cb = Callbacks.ensure(callbacks)
    model = _preprocessed(source)
    layers = _static_layers(source, config)
    chosen = selected(layers, include, exclude)
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.calibration]
    cache = source.scratch / (f"calibration-{config.calibration}-{config.calibration_size}-"
                              f"{config.seed}.json")
    reader = None
    if not cache.is_file():
        rows = source.calibration_rows(config.calibration_size, config.seed)
        reader = _as_reader(_Reader(rows, _input_name(model), _calibration_batch(model),
                                    callbacks=cb))
    act = QuantType.QUInt8 if config.quant_types == "U8S8" else QuantType.QInt8
    with _quiet():
        quantize_static(
            str(model), str(out_path), reader, quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            activation_type=act, weight_type=QuantType.QInt8, calibrate_method=method,
            nodes_to_quantize=None if include is None else (chosen or ["__none__"]),
            nodes_to_exclude=list(exclude), calibration_cache_path=str(cache),
            extra_options={"CalibPercentile": 99.999} if config.calibration == "percentile"
            else None,
        )
    cb.progress(1.0, "Quantized (static INT8, QDQ)")
    why, notes = _weight_range(config.reduce_range, u8s8=config.quant_types == "U8S8")
    return Quantized(Path(out_path), notes, {
        "layers_quantized": chosen, "format": "QDQ", "types": config.quant_types,
        "reduce_range": config.reduce_range, "weight_bits": 7 if config.reduce_range else 8,
        "reduce_range_why": why})


def _weight_range(reduce_range: bool, *, u8s8: bool) -> tuple[str, list[str]]:
    """Why the weights have 7 or 8 bits on this CPU, and a warning where 8 bits can saturate.

    Without VNNI, ONNX Runtime's uint8 x int8 kernels (VPMADDUBSW) add pairs of products in
    16 bits: 255 x 127 x 2 overflows, 255 x 64 x 2 does not (ORT's documented reduce_range).
    """
    from core.quantization._config import saturates_u8s8

    saturates = u8s8 and saturates_u8s8()
    kernels = ("ONNX Runtime's uint8 x int8 kernels add pairs of products in 16 bits there, "
               "which saturate with 8-bit weights")
    reason = _int8_dot_text() if u8s8 else "S8S8 does not run the uint8 x int8 kernels"
    if reduce_range:
        return ((f"7-bit weights: {reason}, and {kernels}", []) if saturates else
                (f"7-bit weights as asked (not needed: {reason})", []))
    if not saturates:
        return f"8-bit weights: {reason}", []
    return "8-bit weights as asked, though they can saturate here", [
        f"Weights are 8-bit (reduce_range=False) and {reason}: {kernels}. If accuracy drops, "
        "use reduce_range=True (7-bit weights, the default on such CPUs) or quant_types='S8S8'."]


def _int8_dot_text() -> str:
    from core.measure import int8_dot_text

    return int8_dot_text()


# --- dynamic INT8 -------------------------------------------------------------------------
@quant_method("ort-dynamic-int8", config=OrtDynamicInt8Config, layers=_dynamic_layers,
              artifact="model.onnx",
              summary="ONNX Runtime dynamic INT8 (MatMul/Gemm; convolutions stay FP32)")
def ort_dynamic_int8(source: Source, config: OrtDynamicInt8Config, out_path: Path, *,
                     include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                     callbacks: Callbacks | None = None) -> Quantized:
    """Dynamic INT8: weights INT8 offline, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cb = Callbacks.ensure(callbacks)
    model = _matmul_form(source)
    _refuse_half_input(model, "ort-dynamic-int8")
    layers = _dynamic_layers(source, config)
    chosen = selected(layers, include, exclude)
    notes = []
    convs = _conv_count(model)
    if convs and not config.quantize_conv:
        notes.append(
            f"ort-dynamic-int8 left the {convs} convolution layer(s) in FP32 and quantized only "
            "MatMul/Gemm: dynamic INT8 convolutions run as ConvInteger, which is usually slower "
            f"than FP32 on CPUs ({_isa_text()}). Use ort-static-int8 to quantize convolutions.")
    elif convs:
        notes.append("Convolutions were quantized dynamically (ConvInteger), which is usually "
                     f"slower than FP32 on this CPU ({_isa_text()}); see the measured speed.")
    ops = ["MatMul", "Conv"] if config.quantize_conv else ["MatMul"]
    if not chosen:
        copy_file(model, Path(out_path))
    else:
        with _quiet():
            quantize_dynamic(str(model), str(out_path), op_types_to_quantize=ops,
                             per_channel=config.per_channel, reduce_range=config.reduce_range,
                             weight_type=QuantType.QInt8, nodes_to_quantize=chosen)
    cb.progress(1.0, "Quantized (dynamic INT8)")
    why, range_notes = _weight_range(config.reduce_range, u8s8=True)
    notes += range_notes if chosen else []
    if chosen:  # measured: up to 0.3 pt between batches of 64 and 256 on small conv nets
        notes.append("Dynamic INT8 computes activation scales per batch, so a row's output "
                     "depends slightly on the other rows of its batch: accuracy here is "
                     "evaluated in batches of 256 rows.")
    return Quantized(Path(out_path), notes, {
        "layers_quantized": chosen, "reduce_range": config.reduce_range,
        "weight_bits": 7 if config.reduce_range else 8, "reduce_range_why": why})


# --- FP16 ---------------------------------------------------------------------------------
@quant_method("ort-fp16", config=OrtFp16Config, layers=_fp32_layers, artifact="model.onnx",
              summary="ONNX Runtime FP16 weights and compute (half the file)")
def ort_fp16(source: Source, config: OrtFp16Config, out_path: Path, *,
             include: Sequence[str] | None = None, exclude: Sequence[str] = (),
             callbacks: Callbacks | None = None) -> Quantized:
    """FP16 conversion; inputs and outputs stay float32 so callers need not change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    cb = Callbacks.ensure(callbacks)
    fp32 = source.fp32_onnx()
    layers = _fp32_layers(source, config)
    chosen = selected(layers, include, exclude)
    blocked = [name for name in layers if name not in chosen]
    if not any(t.data_type == onnx.TensorProto.FLOAT
               for t in onnx.load(str(fp32), load_external_data=False).graph.initializer):
        from core.errors import UnsupportedModelError

        raise UnsupportedModelError("'ort-fp16' did nothing on this model: it has no float32 "
                                    "weights to convert (they are already half precision).")
    with _quiet():
        model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True,
                                         node_block_list=blocked or None)
        from onnxruntime.transformers.onnx_model import OnnxModel

        OnnxModel(model).topological_sort()  # the converter appends the input casts last
    onnx.save(model, str(out_path))
    survives(lambda: ort_session(out_path), "ONNX Runtime crashes when it loads the FP16 form of "
             "this model (a fault of ONNX Runtime with some attention graphs); use "
             "ort-static-int8, ort-dynamic-int8 or ort-int4 instead")
    cb.progress(1.0, "Converted to FP16")
    return Quantized(Path(out_path), [], {"layers_quantized": chosen})


# --- INT4 ---------------------------------------------------------------------------------
@quant_method("ort-int4", config=OrtInt4Config, layers=_matmul_layers, artifact="model.onnx",
              summary="ONNX Runtime weight-only 4-bit MatMul (MatMulNBits, block size option)")
def ort_int4(source: Source, config: OrtInt4Config, out_path: Path, *,
             include: Sequence[str] | None = None, exclude: Sequence[str] = (),
             callbacks: Callbacks | None = None) -> Quantized:
    """Blockwise 4-bit weights for MatMul/Gemm layers; accuracy level 4 (INT8 compute)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    cb = Callbacks.ensure(callbacks)
    model_path = _matmul_form(source)
    _refuse_half_input(model_path, "ort-int4")
    layers = _matmul_layers(source, config)
    chosen = selected(layers, include, exclude)
    notes = []
    convs = _conv_count(model_path)
    if convs:
        notes.append(f"ort-int4 quantizes MatMul/Gemm weights only; the {convs} convolution "
                     "layer(s) stay FP32.")
    if not chosen:
        copy_file(model_path, Path(out_path))
    else:
        with _quiet():
            quant = MatMulNBitsQuantizer(
                onnx.load(str(model_path)), bits=4, block_size=config.block_size,
                is_symmetric=config.symmetric, accuracy_level=4, nodes_to_include=chosen,
                op_types_to_quantize=("MatMul",))
            quant.process()
            quant.model.save_model_to_file(str(out_path), use_external_data_format=False)
    cb.progress(1.0, "Quantized (INT4 weights)")
    return Quantized(Path(out_path), notes, {"layers_quantized": chosen,
                                             "block_size": config.block_size})
