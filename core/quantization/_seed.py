"""``quantize_model`` as the seeds call it, and as the studio does; both forward to the verb.

Seed forms: ``quantize_model(model, mode='dynamic')`` and ``quantize_model(model=m,
train_loader=dl, dtype='qint8', qat_epochs=3, device='cpu')`` (``result['quantized_model']``,
``result['metrics']['compression_ratio']``). Studio form: ``quantize_model(model, data,
method='ort-static-int8', **options)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.callbacks import Callbacks
from core.errors import InvalidParameterError

__all__ = ["CALIBRATION_ALIASES", "quantize_model", "seed_method"]

# The seeds' calibration names → the studio's (ONNX Runtime calls KL "Entropy").
CALIBRATION_ALIASES = {"kl": "entropy", "minmax": "minmax", "entropy": "entropy",
                       "percentile": "percentile", "max": "minmax"}

_INT8 = ("qint8", "int8", "torch.qint8", "8-bit", "8")
_FP16 = ("float16", "fp16", "half", "torch.float16", "16-bit", "16")
_BF16 = ("bfloat16", "bf16", "torch.bfloat16")


def seed_method(*, mode: str | None, dtype: Any, qat_epochs: int | None,
                onnx_input: bool = False) -> str:
    """The studio method for the seeds' (mode, dtype, qat_epochs)."""
    name = str(dtype).lower() if dtype is not None else "qint8"
    if name in _FP16:
        return "ort-fp16" if onnx_input else "torch-fp16"
    if name in _BF16:
        return "torch-bf16"
    if name not in _INT8:
        raise InvalidParameterError("dtype", "'qint8' or 'float16' (or torch.qint8 / "
                                    "torch.float16)", dtype)
    if mode in ("qat",) or (qat_epochs and mode in (None, "qat")):
        return "torch-qat-int8"
    if mode == "dynamic":
        return "ort-dynamic-int8" if onnx_input else "torch-dynamic-int8"
    if mode in (None, "static"):
        return "ort-static-int8"
    raise InvalidParameterError("mode", "'dynamic', 'static' or 'qat'", mode)


def calibration_option(options: dict[str, Any]) -> dict[str, Any]:
    """``algorithm=``/``calibration=`` with the seeds' names mapped (``kl`` → ``entropy``)."""
    opts = dict(options)
    value = opts.pop("algorithm", None) if "algorithm" in opts else opts.get("calibration")
    if value is not None:
        if str(value).lower() not in CALIBRATION_ALIASES:
            raise InvalidParameterError("calibration", f"one of {sorted(CALIBRATION_ALIASES)}",
                                        value)
        opts["calibration"] = CALIBRATION_ALIASES[str(value).lower()]
    return opts


def _is_onnx(model: Any) -> bool:
    if isinstance(model, (str, Path)):
        from core.artifacts import load_model

        return load_model(model).kind == "onnx"
    return False


def quantize_model(model: Any, data: Any = None, method: str | None = None, *,
                   train_loader: Any = None, test_loader: Any = None, mode: str | None = None,
                   dtype: Any = None, qat_epochs: int | None = None, device: str = "cpu",
                   out_dir: str | Path | None = None, callbacks: Callbacks | None = None,
                   measure_options: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """Quantize and measure; returns a RunResult that also answers ``['quantized_model']``."""
    from core.quantization._verb import quantize_model as studio_quantize_model
    from core.seed_compat import SeedRunResult, check_device, resolve_data

    check_device(device)
    if method is None:
        method = seed_method(mode=mode, dtype=dtype, qat_epochs=qat_epochs,
                             onnx_input=_is_onnx(model))
    elif mode is not None or dtype is not None:
        raise InvalidParameterError("method", "omitted when mode/dtype name the method", method)
    opts = calibration_option(options)
    if qat_epochs is not None:
        if method != "torch-qat-int8":
            raise InvalidParameterError("qat_epochs", f"unset for '{method}'", qat_epochs)
        opts["epochs"] = qat_epochs
    data = resolve_data(model, data, train_loader=train_loader, test_loader=test_loader)
    result = studio_quantize_model(model, data, method, out_dir=out_dir, callbacks=callbacks,
                                   measure_options=measure_options, **opts)
    return SeedRunResult.of(result, "quantized_model")
