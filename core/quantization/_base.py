"""What every quantization method gets (a Source) and returns (a Quantized artifact)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.errors import UnsupportedModelError
from core.registry import register_method

AREA = "quantization"


@dataclass
class Source:
    """The FP32 model to quantize: a torch module and/or an FP32 ONNX file, with its data.

    ONNX forms (exported, pre-processed, Gemm rewritten) are made once and cached in
    ``scratch`` so that per-layer sensitivity does not redo them.
    """

    data: Any
    scratch: Path
    torch_model: Any = None
    onnx_file: Path | None = None
    output_name: str | None = None  # the scores output of a several-output ONNX model
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data.input_shape)

    def require_torch(self, method: str) -> Any:
        """The torch module, or a clear error when the input is an ONNX model."""
        import torch

        model = self.torch_model
        if model is None or isinstance(model, torch.jit.ScriptModule) or \
                not isinstance(model, torch.nn.Module):
            raise UnsupportedModelError(
                f"'{method}' needs a PyTorch model (a built-in model or an nn.Module); this "
                "input is an ONNX or TorchScript file. Use an ort-* method instead, e.g. "
                "ort-static-int8.")
        return model

    def fp32_onnx(self) -> Path:
        """The FP32 ONNX file (exported from torch once, with a parity check)."""
        if "fp32" not in self.cache:
            if self.onnx_file is not None:
                self.cache["fp32"] = self.onnx_file
            else:
                import torch

                from core.artifacts import export_onnx

                model = self.torch_model  # an nn.Module or TorchScript (legacy exporter)
                if model is None:
                    raise UnsupportedModelError("An ONNX model is needed for ONNX Runtime "
                                                "methods; none was given.")
                path = self.scratch / "fp32.onnx"
                parity = export_onnx(model, path, torch.randn(1, *self.input_shape),
                                     check_inputs=self.data.X_test[:64])
                self.cache["parity"] = parity
                self.cache["fp32"] = path
        return self.cache["fp32"]

    def calibration_rows(self, size: int, seed: int) -> np.ndarray:
        """A seeded random slice of the TRAIN split (never val or test)."""
        X = self.data.X_train
        idx = np.random.default_rng(seed).permutation(len(X))[:size]
        return np.ascontiguousarray(X[np.sort(idx)])


@dataclass
class Quantized:
    """A method's output: the artifact it wrote and what the user should know about it."""

    path: Path
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """How a registered method runs: its function, layer lister and artifact kind."""

    name: str
    run: Callable[..., Quantized]
    layers: Callable[[Source, Any], list[str]]
    artifact: str  # "model.onnx" or "model.pt"
    layerwise: bool = True


def quant_method(name: str, *, config: type, summary: str, layers: Callable[..., list[str]],
                 artifact: str, layerwise: bool = True) -> Callable:
    """Register a method in the studio registry (area "quantization"), its ``MethodSpec`` as
    the registry entry's ``spec``.

    The method is ``run(source, config, out_path, *, include=None, exclude=(), callbacks)``:
    quantize only ``include`` layers (all when None) minus ``exclude``, write ``out_path``.
    """

    def decorate(fn: Callable[..., Quantized]) -> Callable[..., Quantized]:
        spec = MethodSpec(name, fn, layers, artifact, layerwise)
        return register_method(name, area=AREA, config=config, summary=summary, spec=spec)(fn)

    return decorate


def method_spec(method: str | Any) -> MethodSpec:
    """How a method runs, from its name or its config (dispatched on the config's type)."""
    from core.registry import get_method, method_for_config

    info = get_method(AREA, method) if isinstance(method, str) else \
        method_for_config(AREA, method)
    return info.spec


def copy_file(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def selected(layers: Sequence[str], include: Sequence[str] | None,
             exclude: Sequence[str]) -> list[str]:
    """Layers to quantize: ``include`` (all when None) minus ``exclude``, in layer order."""
    chosen = set(layers if include is None else include) - set(exclude)
    return [name for name in layers if name in chosen]
