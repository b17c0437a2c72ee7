"""Quantization: ONNX Runtime and PyTorch INT8 / FP16 / BF16 / INT4, measured against FP32.

Methods register themselves in ``core.registry`` (area ``"quantization"``):
``ort-static-int8``, ``ort-dynamic-int8``, ``ort-fp16``, ``ort-int4``, ``torch-dynamic-int8``,
``torch-static-int8``, ``torch-qat-int8``, ``torch-fp16``, ``torch-bf16``.
"""

from core.quantization import _ort, _torch  # noqa: F401  (register the methods)
from core.quantization._check import (
    applicable_methods,
    check_applies,
    method_kinds,
    quantization_evidence,
)
from core.quantization._config import (
    OrtDynamicInt8Config,
    OrtFp16Config,
    OrtInt4Config,
    OrtStaticInt8Config,
    QuantizationConfig,
    TorchBf16Config,
    TorchDynamicInt8Config,
    TorchFp16Config,
    TorchQatInt8Config,
    TorchStaticInt8Config,
)
from core.quantization._seed import quantize_model  # the seeds' forms too
from core.quantization._verb import (
    is_layerwise,
    load_artifact,
    make_config,
    quantize,
)

__all__ = [
    "OrtDynamicInt8Config",
    "OrtFp16Config",
    "OrtInt4Config",
    "OrtStaticInt8Config",
    "QuantizationConfig",
    "TorchBf16Config",
    "TorchDynamicInt8Config",
    "TorchFp16Config",
    "TorchQatInt8Config",
    "TorchStaticInt8Config",
    "applicable_methods",
    "check_applies",
    "is_layerwise",
    "load_artifact",
    "make_config",
    "method_kinds",
    "quantization_evidence",
    "quantize",
    "quantize_model",
]
