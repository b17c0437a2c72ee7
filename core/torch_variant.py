"""Shared by verbs that rewrite a torch module (fusion, low-rank): open the input, write the run.

The result is a plain nn.Module, not a built-in family, so its deployable form is
``model.onnx`` (with ``model.json``: input shape, classes, preprocessing, what was done).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.errors import UnsupportedModelError

__all__ = ["TorchInput", "open_torch_input", "write_torch_variant"]


@dataclass
class TorchInput:
    """The torch module to rewrite, its data, the files of its size and its run id."""

    model: Any
    data: Any
    files: list[Path]
    run_id: str | None


def open_torch_input(model: Any, data: Any, *, operation: str,
                     convert_onnx: bool = False) -> TorchInput:
    """The input opened by core.inputs' rules, as a torch module to rewrite; with
    ``convert_onnx`` an ONNX model becomes a trainable torch module (onnx2torch, checked
    against ONNX Runtime) instead of being refused. Its size is its ONNX bytes when it has an
    ONNX file (the deployable artifact, like the result's)."""
    import torch

    from core.artifacts._onnx import onnx_files
    from core.inputs import open_input

    inp = open_input(model, data)
    module, files = inp.model, inp.written_files  # a converted module outlives the session
    if inp.kind == "onnx" and convert_onnx and inp.loaded is not None:
        from core.artifacts import trainable_module

        module = trainable_module(inp.loaded)
    elif inp.kind == "onnx":
        raise UnsupportedModelError(
            f"{operation} rewrites torch modules; this model is ONNX. ONNX Runtime applies "
            "its own graph fusions when it loads a model.")
    if inp.kind == "export":  # its module refuses eval() (an internal error before)
        raise UnsupportedModelError(
            f"{operation} rewrites an nn.Module's layers; a torch.export (.pt2) program runs "
            "as one flat graph of ops. Pass the Python nn.Module"
            + (" or its ONNX export (converted to torch)." if convert_onnx else "."))
    if inp.run_id is not None and (inp.path / "model.onnx").is_file():
        files = onnx_files(inp.path / "model.onnx")
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise UnsupportedModelError(f"{operation} needs a torch.nn.Module (not TorchScript); "
                                    f"got {type(module).__name__}.")
    return TorchInput(module.eval(), inp.data, files, inp.run_id)


def _as_plain_module(model: Any) -> Any:
    """A built-in model whose layers were rewritten (factorized, fused), wrapped as a plain
    module: it is saved as model.onnx, not as its family's safetensors, which no longer fit."""
    import torch

    class Rewritten(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.input_shape = getattr(inner, "input_shape", None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    return Rewritten(model)


def write_torch_variant(tmp: Path, *, operation: str, method: str, config: Mapping[str, Any],
                        inp: TorchInput, result_model: Any, seed: int = 0,
                        warnings: Sequence[str] = (), parent: str | None = None,
                        extra: Mapping[str, Any] | None = None,
                        measure_options: Mapping[str, Any] | None = None,
                        callbacks: Any = None) -> dict[str, Any]:
    """Save the rewritten module as model.onnx + model.json and measure it beside the input."""
    from core.artifacts import save_model, write_run
    from core.models import is_builtin

    if is_builtin(result_model):  # rewritten layers: no longer the family's own widths
        result_model = _as_plain_module(result_model)
    saved = save_model(result_model, tmp, data=inp.data,
                       extra_meta={operation: {"method": method, "config": dict(config)}})
    return write_run(
        tmp, operation=operation, method=method, config=config, data=inp.data,
        result_model=result_model, result_files=[tmp / "model.onnx"],
        baseline_model=inp.model, baseline_files=inp.files, seed=seed, warnings=warnings,
        parent=parent or inp.run_id, measure_options=measure_options, callbacks=callbacks,
        extra={**dict(extra or {}), "onnx_parity_max_abs_diff": saved["onnx_parity"]})
