"""One calling convention for torch modules and ONNX Runtime sessions: numpy in, logits out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.errors import InvalidParameterError, UnsupportedModelError


class Predictor:
    """Wraps a model so that ``predictor(X) -> logits`` (numpy float32 in and out)."""

    def __init__(self, model: Any, *, threads: int = 1) -> None:
        self.model = model
        self.threads = threads
        self.kind = "onnx" if _is_ort_session(model) else "torch"
        if self.kind == "torch":
            import torch

            if not isinstance(model, torch.nn.Module) and not hasattr(model, "forward"):
                raise InvalidParameterError("model", "a torch.nn.Module or an ONNX Runtime "
                                            "InferenceSession", type(model).__name__)
            try:
                model.eval()
            except (NotImplementedError, RuntimeError):  # torch.export modules refuse .eval()
                pass
            self._dtype = _input_dtype(model)
        else:
            from core.artifacts._onnx import scores_output, session_outputs

            inp = model.get_inputs()[0]
            self._input_name = inp.name
            self._np_dtype = {"tensor(float16)": np.float16,  # e.g. sklearn-onnx's doubles
                              "tensor(double)": np.float64}.get(inp.type, np.float32)
            first = inp.shape[0] if inp.shape else None
            self.fixed_batch = first if isinstance(first, int) and first > 0 else None
            self.output_name = scores_output(
                session_outputs(model), name=getattr(model, "studio_output_name", None)).name

    fixed_batch: int | None = None  # an ONNX model that accepts only this batch size

    def accepts(self, batch_size: int) -> bool:
        """Whether the model runs a batch of this size as one call."""
        return self.fixed_batch is None or batch_size == self.fixed_batch

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if self.kind == "onnx":
            if self.fixed_batch is not None and len(X) != self.fixed_batch:
                return self._in_fixed_batches(X)
            out = self.model.run([self.output_name],
                                 {self._input_name: X.astype(self._np_dtype, copy=False)})
            return np.asarray(out[0], dtype=np.float32)
        import torch

        with torch.inference_mode():
            try:
                out = self.model(torch.from_numpy(np.ascontiguousarray(X)).to(self._dtype))
            except (RuntimeError, AssertionError) as exc:
                refusal = input_refusal(str(exc))
                if refusal is None:
                    raise
                raise refusal from None
        return out.float().numpy()

    def _in_fixed_batches(self, X: np.ndarray) -> np.ndarray:
        """Run a fixed-batch model chunk by chunk; a short last chunk is padded, then cut."""
        size, parts = self.fixed_batch, []
        for i in range(0, len(X), size):
            chunk = X[i : i + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), 0)])
            parts.append(self(chunk)[: min(size, len(X) - i)])
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    @contextlib.contextmanager
    def pinned_threads(self) -> Iterator[None]:
        """Run torch with this predictor's thread count under the process-wide measurement
        lock (the count is process-wide), then restore the global setting."""
        from core.measure._lock import measurement_lock, torch_threads

        if self.kind == "onnx":  # its threads are fixed in the session: no torch to import
            with measurement_lock():
                yield
            return
        with torch_threads(self.threads):
            yield


# What torch says when a module wants integer inputs (an nn.Embedding over token ids, or a
# declared int64 input) and is fed the data set's float features.
_INTEGER_INPUT_ERRORS = ("scalar types: Long, Int", "expected scalar type Long",
                         "to be equal to torch.int64")


def input_refusal(message: str) -> UnsupportedModelError | None:
    """The clear refusal for a torch module that cannot take the rows it is fed (a fixed
    input shape, integer token ids), or None for any other error."""
    if "Guard failed" in message:  # torch.export shape guards
        return UnsupportedModelError(
            f"The model accepts only some input shapes ({message[:120]}); export it "
            "with a dynamic batch dimension, e.g. torch.export.export(model, (x,), "
            "dynamic_shapes=({0: torch.export.Dim.AUTO},)).")
    if any(s in message for s in _INTEGER_INPUT_ERRORS):
        return UnsupportedModelError(
            "The model takes integer inputs (token ids, e.g. an nn.Embedding over them) and "
            "torch refused the data set's float features; the studio feeds features as "
            "floats, so it measures models whose input is float32, float16, float64.")
    return None


def _is_ort_session(model: Any) -> bool:
    return type(model).__name__ == "InferenceSession" and hasattr(model, "get_inputs")


def _input_dtype(model: Any):
    import torch

    for p in list(model.parameters())[:1]:
        if p.dtype in (torch.float16, torch.bfloat16):
            return p.dtype
    return torch.float32


def ort_session(path: str | Path, *, threads: int = 1, output_name: str | None = None):
    """An ONNX Runtime CPU session with a fixed intra-op thread count; ``output_name`` names
    the output a Predictor scores (default: chosen by ``core.artifacts`` from the outputs)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    session.studio_output_name = output_name
    return session


def as_predictor(model: Any, *, threads: int = 1) -> Predictor:
    """A Predictor for a module, an ORT session, a Predictor, or a path to an ``.onnx`` file."""
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, Path)):
        model = ort_session(model, threads=threads)
    return Predictor(model, threads=threads)


def predict_logits(model: Any, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits for all rows of X, in batches."""
    pred = as_predictor(model)
    with pred.pinned_threads():
        return _batched(pred, X, batch_size)


def _batched(pred: Predictor, X: np.ndarray, batch_size: int) -> np.ndarray:
    parts = [pred(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def predict_many(models: list[Any], X: np.ndarray, *, batch_size: int = 256
                 ) -> list[np.ndarray]:
    """``predict_logits`` of several models on the same rows. Where every model is an ONNX
    Runtime session of one intra-op thread, their batches run side by side on the machine's
    cores, a Python thread per core taking the next batch of any model (ORT releases the GIL
    and a session may run from several threads; each batch is computed as alone, so the
    logits are the same), under one hold of the measurement lock; else one after the other."""
    import os

    preds = [as_predictor(m) for m in models]
    cores = os.cpu_count() or 1
    if cores < 2 or not preds or any(p.kind != "onnx" or p.threads != 1 for p in preds):
        return [predict_logits(p, X, batch_size=batch_size) for p in preds]
    from concurrent.futures import ThreadPoolExecutor

    from core.measure._lock import measurement_lock

    size = max(1, min(batch_size, -(-len(X) // cores)))  # enough batches to keep cores busy
    starts = range(0, len(X), size)
    with measurement_lock(), ThreadPoolExecutor(cores) as pool:
        parts = list(pool.map(lambda task: task[0](X[task[1]: task[1] + size]),
                              [(p, i) for p in preds for i in starts]))
    per_model = [parts[k * len(starts):(k + 1) * len(starts)] for k in range(len(preds))]
    return [np.concatenate(ps) if ps else np.zeros((0, 0), np.float32) for ps in per_model]
