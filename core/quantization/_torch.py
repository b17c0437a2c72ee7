"""PyTorch methods: dynamic/static/QAT INT8 (torch.ao, FX graph mode), FP16 and BF16.

``torch.ao.quantization`` is deprecated upstream; everything that touches it lives in this
module, behind the registry, so it can be swapped (e.g. for torchao PT2E) without callers
noticing. Artifacts are TorchScript ``model.pt`` files (there is no ONNX form).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.callbacks import Callbacks
from core.errors import UnsupportedModelError
from core.quantization._base import Quantized, Source, quant_method, selected
from core.quantization._config import (
    QuantizationConfig,
    TorchBf16Config,
    TorchDynamicInt8Config,
    TorchFp16Config,
    TorchQatInt8Config,
    TorchStaticInt8Config,
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _engine(backend: str) -> Iterator[None]:
    """Select the quantized kernel library for the duration of a call."""
    import torch

    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _non_traceable(model: Any) -> list[type]:
    """Module classes FX cannot trace symbolically (they unpack tensor shapes)."""
    from core.models._families import Attention

    return [Attention] if any(isinstance(m, Attention) for m in model.modules()) else []


def _module_layers(model: Any, kinds: tuple[type, ...], skip: Sequence[type] = ()) -> list[str]:
    """Names of ``kinds`` submodules, leaving out those inside ``skip`` classes."""
    skipped = [name for name, m in model.named_modules() if skip and isinstance(m, tuple(skip))]
    return [name for name, m in model.named_modules() if isinstance(m, kinds)
            and not any(name.startswith(s + ".") for s in skipped)]


def _linear_layers(source: Source, config: Any) -> list[str]:
    import torch

    return _module_layers(source.require_torch("torch-dynamic-int8"), (torch.nn.Linear,))


def _fx_layers(source: Source, config: Any) -> list[str]:
    import torch

    model = source.require_torch(getattr(config, "method", "torch-static-int8"))
    return _module_layers(model, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d),
                          _non_traceable(model))


def _counts(model: Any) -> dict[str, int]:
    """Weight counts of the in-memory module (TorchScript hides packed quantized weights)."""
    from core.measure import torch_param_counts

    total, nonzero = torch_param_counts(model)
    return {"params": total, "nonzero_params": nonzero}


def _save_script(model: Any, example: Any, path: Path) -> Path:
    """TorchScript trace (frozen) saved to ``path``."""
    import torch

    with _quiet(), torch.inference_mode():
        traced = torch.jit.trace(model, example, check_trace=False)
        traced = torch.jit.freeze(traced.eval())
    torch.jit.save(traced, str(path))
    return path


def _example(source: Source, batch: int = 1, dtype: Any = None) -> Any:
    import torch

    x = torch.from_numpy(source.data.X_train[:batch].copy())
    return x.to(dtype) if dtype is not None else x


# --- dynamic INT8 -------------------------------------------------------------------------
@quant_method("torch-dynamic-int8", config=TorchDynamicInt8Config, layers=_linear_layers,
              artifact="model.pt", summary="PyTorch dynamic INT8 of Linear layers (TorchScript)")
def torch_dynamic_int8(source: Source, config: TorchDynamicInt8Config, out_path: Path, *,
                       include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                       callbacks: Callbacks | None = None) -> Quantized:
    """Linear weights INT8, activations quantized per batch; convolutions stay FP32."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    cb = Callbacks.ensure(callbacks)
    model = source.require_torch(config.method)
    chosen = selected(_linear_layers(source, config), include, exclude)
    with _quiet(), _engine("x86"):
        q = quantize_dynamic(copy.deepcopy(model).eval(), set(chosen), dtype=torch.qint8)
        _save_script(q, _example(source), Path(out_path))
    convs = len(_module_layers(model, (torch.nn.Conv1d, torch.nn.Conv2d)))
    notes = [f"torch-dynamic-int8 quantizes Linear layers only; the {convs} convolution "
             "layer(s) stay FP32."] if convs else []
    cb.progress(1.0, "Quantized (torch dynamic INT8)")
    return Quantized(Path(out_path), notes, {"layers_quantized": chosen, **_counts(q)})


# --- static INT8 (FX) ---------------------------------------------------------------------
def _qconfig_mapping(backend: str, chosen: list[str], all_layers: list[str], *, qat: bool):
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping

    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(backend)
    for name in all_layers:
        if name not in chosen:
            mapping.set_module_name(name, None)
    return mapping


def _prepare(model: Any, source: Source, config: Any, chosen: list[str], *, qat: bool) -> Any:
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    layers = _fx_layers(source, config)
    mapping = _qconfig_mapping(config.backend, chosen, layers, qat=qat)
    skip = _non_traceable(model)
    for name, module in model.named_modules():
        if skip and isinstance(module, tuple(skip)):
            mapping.set_module_name(name, None)  # stays float (QAT would leave fake-quants)
    custom = PrepareCustomConfig().set_non_traceable_module_classes(skip)
    try:
        with _quiet():
            if qat:
                return prepare_qat_fx(model.train(), mapping, (_example(source, 2),), custom)
            return prepare_fx(model.eval(), mapping, (_example(source),), custom)
    except Exception as exc:  # symbolic tracing failed on this model
        raise UnsupportedModelError(
            f"{config.method} could not trace the model with torch.fx "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). Use torch-dynamic-int8 "
            "or an ort-* method instead.") from None


@quant_method("torch-static-int8", config=TorchStaticInt8Config, layers=_fx_layers,
              artifact="model.pt",
              summary="PyTorch static INT8 (FX graph mode), calibrated on the train split")
def torch_static_int8(source: Source, config: TorchStaticInt8Config, out_path: Path, *,
                      include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                      callbacks: Callbacks | None = None) -> Quantized:
    """Post-training static INT8: observers calibrated on train rows, then converted."""
    import torch
    from torch.ao.quantization.quantize_fx import convert_fx

    cb = Callbacks.ensure(callbacks)
    model = source.require_torch(config.method)
    chosen = selected(_fx_layers(source, config), include, exclude)
    rows = source.calibration_rows(config.calibration_size, config.seed)
    with _engine(config.backend):
        prepared = _prepare(copy.deepcopy(model), source, config, chosen, qat=False)
        with torch.inference_mode():
            for i in range(0, len(rows), 32):
                cb.progress(0.8 * i / len(rows), f"Calibrating ({i}/{len(rows)} rows)")
                prepared(torch.from_numpy(rows[i : i + 32]))
        with _quiet():
            q = convert_fx(prepared)
        _save_script(q, _example(source), Path(out_path))
    cb.progress(1.0, "Quantized (torch static INT8)")
    notes = []
    if _non_traceable(model):
        notes.append("The attention blocks stay FP32 in torch-static-int8 (torch.fx cannot "
                     "trace them); use ort-static-int8 to quantize them too.")
    return Quantized(Path(out_path), notes, {"layers_quantized": chosen,
                                             "backend": config.backend, **_counts(q)})


# --- QAT ----------------------------------------------------------------------------------
@quant_method("torch-qat-int8", config=TorchQatInt8Config, layers=_fx_layers,
              artifact="model.pt", layerwise=False,
              summary="PyTorch quantization-aware training (fake quant fine-tune, then INT8)")
def torch_qat_int8(source: Source, config: TorchQatInt8Config, out_path: Path, *,
                   include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                   callbacks: Callbacks | None = None) -> Quantized:
    """Fine-tune with fake quantization on the train split, then convert to INT8."""
    from torch.ao.quantization.quantize_fx import convert_fx

    from core.training import TrainConfig, train

    cb = Callbacks.ensure(callbacks)
    model = source.require_torch(config.method)
    chosen = selected(_fx_layers(source, config), include, exclude)
    with _engine(config.backend):
        prepared = _prepare(copy.deepcopy(model), source, config, chosen, qat=True)
        with _quiet():
            history = train(prepared, source.data,
                            TrainConfig(epochs=config.epochs, lr=config.lr, seed=config.seed),
                            callbacks=cb).history
        prepared.eval()
        with _quiet():
            q = convert_fx(prepared)
        _save_script(q, _example(source), Path(out_path))
    cb.progress(1.0, "Quantized (torch QAT INT8)")
    return Quantized(Path(out_path), [], {"layers_quantized": chosen, "backend": config.backend,
                                          "qat_history": history, **_counts(q)})


# --- FP16 / BF16 --------------------------------------------------------------------------
def _cast_io_class() -> type:
    import torch

    class CastIO(torch.nn.Module):
        """Float32 in and out around a low-precision model (callers need not change)."""

        def __init__(self, inner: Any, dtype: Any) -> None:
            super().__init__()
            self.inner, self.dtype = inner, dtype

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.to(self.dtype)).float()

    return CastIO


def _CastIO(inner: Any, dtype: Any) -> Any:  # noqa: N802
    return _cast_io_class()(inner, dtype)


def _cast(source: Source, config: QuantizationConfig, out_path: Path, dtype: Any,
          include: Sequence[str] | None, exclude: Sequence[str]) -> Quantized:
    model = source.require_torch(config.method)
    layers = _fx_layers(source, config)
    chosen = selected(layers, include, exclude)
    if set(chosen) != set(layers):
        raise UnsupportedModelError(f"{config.method} casts the whole model; it has no "
                                    "per-layer form.")
    low = _CastIO(copy.deepcopy(model).eval().to(dtype), dtype)
    _save_script(low, _example(source), Path(out_path))
    return Quantized(Path(out_path), [], {"layers_quantized": chosen, "dtype": str(dtype),
                                          **_counts(low.inner)})


@quant_method("torch-fp16", config=TorchFp16Config, layers=_fx_layers, artifact="model.pt",
              layerwise=False, summary="PyTorch FP16 weights and compute (TorchScript)")
def torch_fp16(source: Source, config: TorchFp16Config, out_path: Path, *,
               include: Sequence[str] | None = None, exclude: Sequence[str] = (),
               callbacks: Callbacks | None = None) -> Quantized:
    """Cast weights and compute to float16."""
    import torch

    return _cast(source, config, out_path, torch.float16, include, exclude)


@quant_method("torch-bf16", config=TorchBf16Config, layers=_fx_layers, artifact="model.pt",
              layerwise=False, summary="PyTorch BF16 weights and compute (TorchScript)")
def torch_bf16(source: Source, config: TorchBf16Config, out_path: Path, *,
               include: Sequence[str] | None = None, exclude: Sequence[str] = (),
               callbacks: Callbacks | None = None) -> Quantized:
    """Cast weights and compute to bfloat16 (fast on CPUs with AVX-512 BF16 or AMX)."""
    import torch

    return _cast(source, config, out_path, torch.bfloat16, include, exclude)
