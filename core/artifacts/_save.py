"""Saving: built-ins as model.json + model.safetensors, and model.onnx with a parity check."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UnsupportedModelError

FORMATS = {
    ".onnx": "onnx", ".safetensors": "safetensors", ".json": "json", ".pt": "torchscript",
    ".pt2": "torch-export", ".zip": "zip", ".csv": "csv", ".yaml": "yaml", ".md": "markdown",
    ".data": "onnx-external-data",  # model.onnx.data: the weights of model.onnx
}


def file_entry(path: str | Path, root: str | Path) -> dict[str, Any]:
    """``{path, format, bytes, sha256}`` of an artifact, with its path relative to the run."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path.relative_to(root)), "format": FORMATS.get(path.suffix, "file"),
            "bytes": path.stat().st_size, "sha256": digest}


def export_onnx(model: Any, path: str | Path, example: Any, *, opset: int = 17,
                check_inputs: np.ndarray | None = None) -> float:
    """Export to ONNX (batch axis dynamic) and return the max |ORT − torch| on check inputs."""
    import torch

    from core.measure import ort_session
    from core.measure._predictor import input_refusal

    model.eval()
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # the tracer's guesses about Python values: the export is checked against torch
            # on check_inputs below, which is the real test
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # The legacy exporter, kept on purpose (benchmarks/onnx_export.py, torch 2.13, AMD
            # EPYC AVX2, shared machine): dynamo=True took 43.7 s per export of the digits CNN
            # vs 1.35 s, and 61.6 s vs 4.2 s for a ResNet-like (15-32x), for the same parity
            # (1.9e-6 / 3.8e-6 vs 4.3e-6) and the same ORT latency of the file (CNN p50 b1
            # 0.043 vs 0.043 ms, b64 0.367 vs 0.357 ms; the ResNet-like's b1 37 vs 54 ms and
            # b64 2312 vs 2373 ms were within that load's noise). Every run exports ONNX, so
            # that cost is paid per run. Revisit when the dynamo exporter's time drops.
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as exc:
        path.unlink(missing_ok=True)
        text = str(exc)
        refusal = input_refusal(text)  # e.g. token ids: no float example runs the model
        if refusal is not None:
            raise refusal from None
        op = re.search(r"operator '?([\w:.]+)'?", text)
        what = f"operator '{op.group(1)}'" if op else text.splitlines()[0][:200]
        raise UnsupportedModelError(
            f"The model cannot be exported to ONNX ({what}). Use a torch method instead "
            "(e.g. torch-dynamic-int8) or a model without that operator.") from None
    X = check_inputs if check_inputs is not None else example.detach().numpy()
    X = np.concatenate([X, X]) if len(X) < 2 else X  # a second row shows a batch traced fixed
    with torch.inference_mode():
        ref = model(torch.from_numpy(X)).float().numpy()
    try:
        got = ort_session(path).run(None, {"input": X.astype(np.float32)})[0]
    except Exception:  # ONNX Runtime refuses this batch size
        got = None
    if got is None or got.shape != ref.shape:
        _free_the_batch(path, len(example))
        got = ort_session(path).run(None, {"input": X.astype(np.float32)})[0]
    return float(np.abs(ref - got).max())


def _free_the_batch(path: Path, batch: int) -> None:
    """The tracer wrote the batch size as a constant (e.g. ``x.reshape(len(x), -1)``): make the
    graph's batch dynamic where ONNX Runtime verifies it, else refuse with the fix to make."""
    import tempfile

    from core.artifacts._onnx import make_batch_dynamic, move_onnx

    with tempfile.TemporaryDirectory(prefix="studio-export-") as tmp:
        made = make_batch_dynamic(path, batch, tmp)
        if made is None:
            path.unlink(missing_ok=True)
            raise UnsupportedModelError(
                f"The model's ONNX export runs only at batch size {batch}: its forward uses the "
                "batch size as a number (e.g. x.reshape(len(x), -1)). Write x.reshape(-1, ...) "
                "or x.flatten(1) instead.")
        move_onnx(made, path)


def save_model(model: Any, out_dir: str | Path, *, data: Any = None, onnx: bool = True,
               extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save a model into a run folder; returns ``{"files": [...], "onnx_parity": float}``.

    Built-in families get model.json (family, widths, input shape, classes, preprocessing)
    and model.safetensors; any exportable module also gets model.onnx.
    """
    from safetensors.torch import save_file

    from core.models import is_builtin

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    meta: dict[str, Any] = dict(extra_meta or {})
    if data is not None:
        meta.update(input_shape=list(data.input_shape), classes=data.class_names,
                    preprocessing=data.preprocessing, data=data.spec.to_dict())
    if is_builtin(model):
        meta.update(model.spec().to_dict())
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / "model.safetensors"))
        files.append(out / "model.safetensors")
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    files.append(out / "model.json")
    parity = None
    if onnx:
        shape = tuple(getattr(model, "input_shape", None) or meta.get("input_shape", ()))
        import torch

        example = torch.randn(1, *shape)
        check = data.X_test[:64] if data is not None else None
        parity = export_onnx(model, out / "model.onnx", example, check_inputs=check)
        files.append(out / "model.onnx")
    return {"files": files, "onnx_parity": parity}
