"""PyTorch methods: static/dynamic/QAT INT8 through torchao's PT2E flow, FP16 and BF16.

INT8 uses ``X86InductorQuantizer`` (core/quantization/_pt2e.py); every artifact is a
``torch.export`` program saved as ``model.pt2`` (there is no ONNX form). The INT8 programs are
meant to run compiled (``torch.compile``, inductor with freezing), which is how they are
measured; compile time is reported on its own.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

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

_INT8_KINDS = ("Linear", "Conv2d")  # what X86InductorQuantizer quantizes as layers

def _module_layers(model: Any, kinds: tuple[type, ...]) -> list[str]:
    """Names of ``kinds`` submodules, in model order."""
    return [name for name, m in model.named_modules() if isinstance(m, kinds)]


def _linear_layers(source: Source, config: Any) -> list[str]:
    import torch

    return _module_layers(source.require_torch("torch-dynamic-int8"), (torch.nn.Linear,))


def _int8_layers(source: Source, config: Any) -> list[str]:
    import torch

    model = source.require_torch(getattr(config, "method", "torch-static-int8"))
    return _module_layers(model, (torch.nn.Linear, torch.nn.Conv2d))


def _program_counts(program: Any) -> dict[str, int]:
    """Weights of a quantized program: INT8 and float tensors, not scales or zero points."""
    import torch

    total = nonzero = 0
    for name, t in [*program.state_dict.items(), *program.constants.items()]:
        leaf = name.rsplit(".", 1)[-1]
        if not isinstance(t, torch.Tensor) or t.ndim == 0 or leaf.startswith(
                ("_scale", "_zero_point")) or leaf.endswith(("running_mean", "running_var")):
            continue
        if t.is_floating_point() or t.dtype in (torch.int8, torch.uint8):
            total += t.numel()
            nonzero += int((t != 0).sum())
    return {"params": total, "nonzero_params": nonzero}


def _example(source: Source, batch: int = 2, dtype: Any = None) -> Any:
    """Train rows as the export example (2 rows: a batch of 1 would be specialised)."""
    import numpy as np
    import torch

    rows = source.data.X_train[:batch]
    if len(rows) < batch:
        rows = np.concatenate([rows] * batch)[:batch]
    x = torch.from_numpy(rows.copy())
    return x.to(dtype) if dtype is not None else x


def _save_program(program: Any, path: Path) -> Path:
    """``torch.export.save`` without per-node debugging provenance (source lines, pass
    history): it was most of a small model's file."""
    import torch

    for node in program.graph.nodes:
        for key in ("stack_trace", "from_node"):
            node.meta.pop(key, None)
    torch.export.save(program, str(path))
    return path


def _pt2e_run(source: Source, config: Any, out_path: Path, *, mode: str, layers: list[str],
              chosen: list[str], include: Sequence[str] | None, **hooks: Any) -> Any:
    """Quantize a copy of the source model through PT2E; save the program; its info."""
    from core.quantization._pt2e import pt2e_quantize

    model = copy.deepcopy(source.require_torch(config.method))
    program, info = pt2e_quantize(model, _example(source), mode=mode, chosen=chosen,
                                  all_layers=layers, layerwise=include is not None,
                                  reduce_range=config.reduce_range, **hooks)
    _save_program(program, Path(out_path))
    return {"layers_quantized": chosen, "backend": getattr(config, "backend", "x86"),
            "pt2e": info, **_program_counts(program)}


def _calibrator(rows: Any, cb: Callbacks, lo: float = 0.0, hi: float = 0.8) -> Any:
    def calibrate(module: Any) -> None:
        import torch

        for i in range(0, len(rows), 32):
            cb.progress(lo + (hi - lo) * i / len(rows), f"Calibrating ({i}/{len(rows)} rows)")
            module(torch.from_numpy(rows[i : i + 32]))

    return calibrate


def _int8_notes(config: Any) -> list[str]:
    """How to run the program, and a warning when full-range activations meet a CPU whose
    INT8 kernels saturate with them (no VNNI)."""
    from core.measure import int8_dot_product, int8_dot_text

    if config.reduce_range or int8_dot_product() is True:
        return [_RUN_COMPILED]
    return [f"reduce_range=False (8-bit activations) and {int8_dot_text()}: oneDNN's INT8 "
            "kernels saturate there and the compiled program can lose much accuracy; keep the "
            "default reduce_range=True unless it runs on CPUs with VNNI.", _RUN_COMPILED]


_RUN_COMPILED = ("The INT8 program (model.pt2) is fast only when compiled: "
                 "torch.compile(torch.export.load('model.pt2').module(), dynamic=False) with "
                 "torch._inductor.config.freezing = True (and `import torchao` first).")


# --- dynamic INT8 -------------------------------------------------------------------------
@quant_method("torch-dynamic-int8", config=TorchDynamicInt8Config, layers=_linear_layers,
              artifact="model.pt2",
              summary="PyTorch dynamic INT8 of Linear layers (torchao PT2E, torch.export .pt2)")
def torch_dynamic_int8(source: Source, config: TorchDynamicInt8Config, out_path: Path, *,
                       include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                       callbacks: Callbacks | None = None) -> Quantized:
    """Linear weights INT8, activations quantized per batch; convolutions stay FP32."""
    import torch

    cb = Callbacks.ensure(callbacks)
    model = source.require_torch(config.method)
    layers = _linear_layers(source, config)
    chosen = selected(layers, include, exclude)
    rows = source.calibration_rows(min(32, len(source.data.X_train)), config.seed)
    info = _pt2e_run(source, config, out_path, mode="dynamic", layers=layers, chosen=chosen,
                     include=include, calibrate=_calibrator(rows, cb))  # weights' observers
    convs = len(_module_layers(model, (torch.nn.Conv1d, torch.nn.Conv2d)))
    notes = [f"torch-dynamic-int8 quantizes Linear layers only; the {convs} convolution "
             "layer(s) stay FP32."] if convs else []
    cb.progress(1.0, "Quantized (torch dynamic INT8, PT2E)")
    return Quantized(Path(out_path), notes + _int8_notes(config), info)


# --- static INT8 --------------------------------------------------------------------------
@quant_method("torch-static-int8", config=TorchStaticInt8Config, layers=_int8_layers,
              artifact="model.pt2",
              summary="PyTorch static INT8 (torchao PT2E, X86 inductor), calibrated on the "
                      "train split")
def torch_static_int8(source: Source, config: TorchStaticInt8Config, out_path: Path, *,
                      include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                      callbacks: Callbacks | None = None) -> Quantized:
    """Post-training static INT8: observers calibrated on train rows, then converted."""
    cb = Callbacks.ensure(callbacks)
    layers = _int8_layers(source, config)
    chosen = selected(layers, include, exclude)
    rows = source.calibration_rows(config.calibration_size, config.seed)
    info = _pt2e_run(source, config, out_path, mode="static", layers=layers, chosen=chosen,
                     include=include, calibrate=_calibrator(rows, cb))
    cb.progress(1.0, "Quantized (torch static INT8, PT2E)")
    return Quantized(Path(out_path), _int8_notes(config), info)


# --- QAT ----------------------------------------------------------------------------------
@quant_method("torch-qat-int8", config=TorchQatInt8Config, layers=_int8_layers,
              artifact="model.pt2", layerwise=False,
              summary="PyTorch quantization-aware training (torchao PT2E fake quant fine-tune, "
                      "then INT8)")
def torch_qat_int8(source: Source, config: TorchQatInt8Config, out_path: Path, *,
                   include: Sequence[str] | None = None, exclude: Sequence[str] = (),
                   callbacks: Callbacks | None = None) -> Quantized:
    """Fine-tune with fake quantization on the train split, then convert to INT8."""
    from core.training import TrainConfig, train

    cb = Callbacks.ensure(callbacks)
    layers = _int8_layers(source, config)
    chosen = selected(layers, include, exclude)
    history: list[Any] = []

    def fine_tune(module: Any) -> None:
        history.extend(train(module, source.data, TrainConfig(
            epochs=config.epochs, lr=config.lr, seed=config.seed), callbacks=cb).history)

    info = _pt2e_run(source, config, out_path, mode="qat", layers=layers, chosen=chosen,
                     include=include, fine_tune=fine_tune)
    cb.progress(1.0, "Quantized (torch QAT INT8, PT2E)")
    return Quantized(Path(out_path), _int8_notes(config),
                     {**info, "qat_history": history})


# --- FP16 / BF16 --------------------------------------------------------------------------
def _cast(source: Source, config: QuantizationConfig, out_path: Path, dtype: Any,
          include: Sequence[str] | None, exclude: Sequence[str]) -> Quantized:
    model = source.require_torch(config.method)
    layers = _int8_layers(source, config)
    chosen = selected(layers, include, exclude)
    if set(chosen) != set(layers):
        raise UnsupportedModelError(f"{config.method} casts the whole model; it has no "
                                    "per-layer form.")
    from core.measure import torch_param_counts
    from core.quantization._pt2e import export_program

    low = copy.deepcopy(model).eval().to(dtype)
    _save_program(export_program(low, _example(source, dtype=dtype)), Path(out_path))
    total, nonzero = torch_param_counts(low)
    name = str(dtype).removeprefix("torch.")
    return Quantized(Path(out_path), [f"The {name} program takes and returns {name} tensors "
                                      f"(x.to(torch.{name}))."],
                     {"layers_quantized": chosen, "dtype": str(dtype), "params": total,
                      "nonzero_params": nonzero})


@quant_method("torch-fp16", config=TorchFp16Config, layers=_int8_layers, artifact="model.pt2",
              layerwise=False, summary="PyTorch FP16 weights and compute (torch.export .pt2)")
def torch_fp16(source: Source, config: TorchFp16Config, out_path: Path, *,
               include: Sequence[str] | None = None, exclude: Sequence[str] = (),
               callbacks: Callbacks | None = None) -> Quantized:
    """Cast weights and compute to float16."""
    import torch

    return _cast(source, config, out_path, torch.float16, include, exclude)


@quant_method("torch-bf16", config=TorchBf16Config, layers=_int8_layers, artifact="model.pt2",
              layerwise=False, summary="PyTorch BF16 weights and compute (torch.export .pt2)")
def torch_bf16(source: Source, config: TorchBf16Config, out_path: Path, *,
               include: Sequence[str] | None = None, exclude: Sequence[str] = (),
               callbacks: Callbacks | None = None) -> Quantized:
    """Cast weights and compute to bfloat16 (fast on CPUs with AVX-512 BF16 or AMX)."""
    import torch

    return _cast(source, config, out_path, torch.bfloat16, include, exclude)
