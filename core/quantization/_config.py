"""Quantization configs: one frozen dataclass per method, sharing the accuracy-aware options."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig

# Constraints are declared on the fields (the published JSON schema, core.registry.
# config_schema) and enforced in __post_init__ with the studio's messages.
Calibration = Literal["minmax", "entropy", "percentile"]  # "kl" is read as "entropy"
QuantTypes = Literal["U8S8", "S8S8"]
TorchBackend = Literal["x86", "fbgemm", "onednn"]
CALIBRATIONS, QUANT_TYPES, TORCH_BACKENDS = (get_args(t) for t in (Calibration, QuantTypes,
                                                                      TorchBackend))
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


@dataclass(frozen=True)
class QuantizationConfig(MethodConfig):
    """Options every method shares.

    ``tolerance`` (max accuracy drop on the validation split, e.g. 0.01) keeps the most
    sensitive layers in float until the drop is within it; ``sensitivity`` measures the
    accuracy change of quantizing one layer at a time; ``calibration_size`` rows of the
    TRAIN split calibrate static methods (default: 256, or the whole split when smaller).
    """

    method: ClassVar[str] = ""
    uses_calibration: ClassVar[bool] = False

    # None: 256 rows, or the whole train split if smaller (at most the train split's rows)
    calibration_size: Annotated[int, Field(ge=1)] | None = None
    tolerance: Annotated[float, Field(ge=0, le=1)] | None = None
    sensitivity: bool = False
    exclude: tuple[str, ...] = ()  # layers kept in float by name (mixed precision by layer)
    seed: Seed = 0

    def __post_init__(self) -> None:
        # The range [1, size of the train split] is checked where the data is known.
        if isinstance(self.exclude, str) or not all(isinstance(n, str) for n in self.exclude):
            raise InvalidParameterError("exclude", "a list of layer names", self.exclude)
        object.__setattr__(self, "exclude", tuple(self.exclude))  # names checked per model
        size = self.calibration_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise InvalidParameterError("calibration_size", "an integer", self.calibration_size)
        if size is not None and size < 1:
            raise InvalidParameterError("calibration_size", "an integer in [1, the train "
                                        "split's rows]", size)
        if self.tolerance is not None:
            check_range("tolerance", self.tolerance, low=0, high=1)
        if not isinstance(self.sensitivity, bool):
            raise InvalidParameterError("sensitivity", "true or false", self.sensitivity)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidParameterError(name, f"one of {list(choices)}", value)


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidParameterError(name, "true or false", value)


def saturates_u8s8() -> bool:
    """Whether ORT's uint8 x int8 kernels can saturate here: a CPU not known to have INT8
    dot-product instructions (VNNI/AMX) adds pairs of products in 16 bits (VPMADDUBSW)."""
    from core.measure import int8_dot_product

    return int8_dot_product() is not True


class _ReplaysOlderDicts:
    """A ``to_dict()`` written before ``reduce_range`` existed replays with ORT's default
    then (8-bit weights), not with this CPU's default."""

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Any:
        values = dict(values or {})
        if "schema_version" in values:
            values.setdefault("reduce_range", False)
        return super().from_dict(values)  # type: ignore[misc]


@dataclass(frozen=True)
class OrtStaticInt8Config(_ReplaysOlderDicts, QuantizationConfig):
    """ONNX Runtime static INT8 (QDQ), calibrated on a slice of the train split.

    ``reduce_range``: 7-bit weights, so U8S8 kernels cannot saturate on CPUs without VNNI.
    None (default) resolves when the config is made: True for U8S8 on such a CPU, else False;
    ``to_dict()`` records the resolved value, so a replay is the same on any CPU.
    """

    method: ClassVar[str] = "ort-static-int8"
    uses_calibration: ClassVar[bool] = True

    calibration: Calibration = "minmax"
    per_channel: bool = False
    quant_types: QuantTypes = "U8S8"
    reduce_range: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibration == "kl":  # the seeds' name for entropy (KL-divergence) calibration
            object.__setattr__(self, "calibration", "entropy")
        _choice("calibration", self.calibration, CALIBRATIONS)
        _flag("per_channel", self.per_channel)
        _choice("quant_types", self.quant_types, QUANT_TYPES)
        if self.reduce_range is None:
            object.__setattr__(self, "reduce_range",
                               self.quant_types == "U8S8" and saturates_u8s8())
        _flag("reduce_range", self.reduce_range)


@dataclass(frozen=True)
class OrtDynamicInt8Config(_ReplaysOlderDicts, QuantizationConfig):
    """ONNX Runtime dynamic INT8 (weights INT8, activations quantized at run time).

    ``reduce_range``: 7-bit weights (activations are uint8, so the U8S8 kernels run); None
    (default) resolves as for static INT8: True on a CPU without VNNI, recorded in ``to_dict()``.
    """

    method: ClassVar[str] = "ort-dynamic-int8"

    per_channel: bool = False
    quantize_conv: bool = False
    reduce_range: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _flag("per_channel", self.per_channel)
        _flag("quantize_conv", self.quantize_conv)
        if self.reduce_range is None:
            object.__setattr__(self, "reduce_range", saturates_u8s8())
        _flag("reduce_range", self.reduce_range)


@dataclass(frozen=True)
class OrtFp16Config(QuantizationConfig):
    """ONNX Runtime FP16 (weights and compute in half precision, float32 inputs/outputs)."""

    method: ClassVar[str] = "ort-fp16"


@dataclass(frozen=True)
class OrtInt4Config(QuantizationConfig):
    """ONNX Runtime weight-only 4-bit for MatMul (MatMulNBits, accuracy level 4)."""

    method: ClassVar[str] = "ort-int4"

    block_size: Literal[16, 32, 64, 128, 256] = 32
    symmetric: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size not in (16, 32, 64, 128, 256):
            raise InvalidParameterError("block_size", "one of [16, 32, 64, 128, 256]",
                                        self.block_size)
        _flag("symmetric", self.symmetric)


@dataclass(frozen=True)
class _TorchInt8Config(QuantizationConfig):
    """torch INT8 (torchao PT2E): ``compile`` measures the program the way it is fast, through
    ``torch.compile`` (inductor); False measures it uncompiled (much slower, no compile wait).
    None (default): compile, unless the environment sets ``STUDIO_TORCH_COMPILE=0``.
    ``reduce_range`` (default True): 7-bit activations, which oneDNN's INT8 kernels need on
    CPUs without VNNI (full 8 bits saturate there); False only for CPUs with VNNI."""

    compile: bool | None = None
    reduce_range: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compile is not None:
            _flag("compile", self.compile)
        _flag("reduce_range", self.reduce_range)


@dataclass(frozen=True)
class TorchDynamicInt8Config(_TorchInt8Config):
    """PyTorch dynamic INT8 of the Linear layers (torchao PT2E, torch.export .pt2 artifact)."""

    method: ClassVar[str] = "torch-dynamic-int8"


@dataclass(frozen=True)
class TorchStaticInt8Config(_TorchInt8Config):
    """PyTorch post-training static INT8 (torchao PT2E, X86InductorQuantizer), calibrated on
    the train split. Every ``backend`` value runs the same x86 (oneDNN) recipe."""

    method: ClassVar[str] = "torch-static-int8"
    uses_calibration: ClassVar[bool] = True

    backend: TorchBackend = "x86"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("backend", self.backend, TORCH_BACKENDS)


@dataclass(frozen=True)
class TorchQatInt8Config(_TorchInt8Config):
    """PyTorch quantization-aware training: fine-tune with fake quantization, then convert."""

    method: ClassVar[str] = "torch-qat-int8"

    tolerance: None = None  # fine-tuning recovers accuracy: no per-layer float fallback
    backend: TorchBackend = "x86"
    epochs: Annotated[int, Field(ge=1, le=1000)] = 2
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("backend", self.backend, TORCH_BACKENDS)
        check_range("epochs", self.epochs, low=1, high=1000, kind=int)
        check_range("lr", self.lr, low=0, high=1, low_inclusive=False)
        if self.tolerance is not None:
            raise InvalidParameterError(
                "tolerance", "unset for torch-qat-int8 (fine-tuning recovers accuracy; use a "
                "post-training method for the layer fallback)", self.tolerance)


@dataclass(frozen=True)
class TorchFp16Config(QuantizationConfig):
    """PyTorch FP16 weights and compute (torch.export .pt2 artifact)."""

    method: ClassVar[str] = "torch-fp16"


@dataclass(frozen=True)
class TorchBf16Config(QuantizationConfig):
    """PyTorch BF16 weights and compute (torch.export .pt2 artifact)."""

    method: ClassVar[str] = "torch-bf16"
