"""An inference endpoint for ONNX models: FastAPI + ONNX Runtime, Prometheus metrics.

This file stands alone (numpy, onnxruntime, fastapi, uvicorn, prometheus-client and the
standard library; nothing from ``core``): the studio imports it, and every bundle that serves
a variant ships it as ``serve.py`` beside a Dockerfile. Run it alone with
``python serve.py --model model.onnx [--host 127.0.0.1] [--port 8000]``.

Routes: ``POST /predict`` (``application/json`` ``{"inputs": [[...]]}`` or an
``application/x-npy`` body), ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.
"""

from __future__ import annotations

import argparse
import io
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from fastapi import Request

NPY_TYPE = "application/x-npy"
REQUEST_ID_HEADER = "X-Request-Id"
# Latency buckets in seconds: sub-millisecond models up to slow batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
              "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


class InputError(ValueError):
    """A request the model cannot take; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Per-request bounds: rows in one batch and bytes in one body."""

    max_batch: int = 256
    max_body_bytes: int = 16 * 2**20


class ModelRunner:
    """One ONNX Runtime session and its input signature; validates and runs a batch."""

    def __init__(self, path: str | Path, *, threads: int = 1, output_name: str | None = None,
                 name: str = "model") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"The endpoint serves models with one input; this one has "
                             f"{len(inputs)}.", status=500)
        self.name, self.input = name, inputs[0]
        self.dtype = _ORT_TYPES.get(self.input.type)
        if self.dtype is None:
            raise InputError(f"The model's input type {self.input.type} is not served.", 500)
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = output_name if output_name in outputs else outputs[0]
        self.shape = [d if isinstance(d, int) and d > 0 else None for d in self.input.shape]

    def signature(self) -> dict[str, Any]:
        """The input the model takes: name, dtype and shape (None: any size)."""
        return {"name": self.input.name, "dtype": np.dtype(self.dtype).name,
                "shape": self.shape, "output": self.output_name}

    def _expected(self) -> str:
        dims = ", ".join("batch" if i == 0 and d is None else ("any" if d is None else str(d))
                         for i, d in enumerate(self.shape))
        return f"[{dims}] of {np.dtype(self.dtype).name} (model input '{self.input.name}')"

    def validate(self, x: np.ndarray, limits: Limits) -> np.ndarray:
        """``x`` cast to the model's dtype, or InputError naming the rule it breaks."""
        integer_model = np.issubdtype(self.dtype, np.integer)
        kind_ok = x.dtype.kind in ("i", "u") if integer_model else x.dtype.kind in "iuf"
        if not kind_ok:
            raise InputError(f"'inputs' must be numbers of a type castable to "
                             f"{np.dtype(self.dtype).name}; got {x.dtype.name}. Expected "
                             f"{self._expected()}.")
        if x.ndim != len(self.shape) or any(
                want is not None and got != want for got, want in zip(x.shape, self.shape)):
            raise InputError(f"'inputs' must have shape {self._expected()}; got "
                             f"{list(x.shape)}.")
        if x.shape[0] < 1 or x.shape[0] > limits.max_batch:
            raise InputError(f"'inputs' must hold 1 to {limits.max_batch} rows (the endpoint's "
                             f"max batch size); got {x.shape[0]}.")
        if not integer_model and not np.isfinite(x).all():
            raise InputError("'inputs' must be finite numbers (no NaN or infinity).")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The scores output for a validated batch."""
        return self.session.run([self.output_name], {self.input.name: x})[0]

    def warm_up(self) -> None:
        """One call on zeros, so that readiness means a request has been answered."""
        shape = [1 if d is None else d for d in self.shape]
        self.run(np.zeros(shape, dtype=self.dtype))


def parse_body(content_type: str, body: bytes) -> np.ndarray:
    """The request's array: JSON ``{"inputs": [...]}`` or an NPY file (no pickles)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == NPY_TYPE:
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except Exception as exc:  # numpy says what is wrong with the file
            raise InputError(f"The body is not a readable .npy array: {exc}.") from None
    if kind not in ("application/json", ""):
        raise InputError(f"Content-Type must be application/json or {NPY_TYPE}; got "
                         f"'{kind}'.", status=415)
    import json

    try:
        payload = json.loads(body or b"null")
    except ValueError as exc:
        raise InputError(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('The JSON body must be an object with "inputs": a list of rows, '
                         'e.g. {"inputs": [[0.1, 0.2, ...]]}.')
    try:
        x = np.asarray(payload["inputs"])
    except ValueError:
        raise InputError("'inputs' must be a rectangular (not ragged) list of rows.") from None
    if x.dtype == object or x.dtype.kind in "SUb":
        raise InputError("'inputs' must be a rectangular list of numbers.")
    return x


class Metrics:
    """Prometheus counters and a latency histogram per variant, in the app's own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("studio_requests", "Prediction requests by variant and status",
                                ["variant", "status"], registry=self.registry)
        self.rows = Counter("studio_rows", "Rows predicted", ["variant"], registry=self.registry)
        self.latency = Histogram("studio_request_latency_seconds",
                                 "Time to validate and predict one request", ["variant"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


Router = Callable[[str], str]  # request id -> variant name
Recorder = Callable[[str, str, float, np.ndarray], None]  # id, variant, seconds, predictions


def create_app(runners: dict[str, ModelRunner], *, limits: Limits | None = None,
               router: Router | None = None, recorder: Recorder | None = None,
               title: str = "Model endpoint") -> Any:
    """The FastAPI app serving ``runners`` (one variant, or several with a ``router``)."""
    from fastapi import FastAPI

    limits = limits or Limits()
    app = FastAPI(title=title, docs_url="/docs", redoc_url=None)
    app.state.metrics, app.state.runners, app.state.limits = Metrics(), runners, limits
    app.state.ready = threading.Event()
    route = router or (lambda _rid: next(iter(runners)))
    _add_probe_routes(app)

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        """Scores for a batch: JSON {"inputs": rows} or an .npy body; 422 on bad input."""
        return await _predict(request, app, route, recorder)

    for runner in runners.values():
        runner.warm_up()
    app.state.ready.set()
    return app


def _add_probe_routes(app: Any) -> None:
    from fastapi.responses import JSONResponse, Response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Any:
        """Every model is loaded and has answered a warm-up request."""
        if not app.state.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready",
                "models": {n: r.signature() for n, r in app.state.runners.items()}}

    @app.get("/metrics")
    def metrics() -> Response:
        """Request counters and latency histograms (Prometheus text format)."""
        body, ctype = app.state.metrics.render()
        return Response(body, media_type=ctype)


async def _read_body(request: Any, max_bytes: int) -> bytes:
    """The body, refused (413) as soon as it passes ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise InputError(f"The body is {int(declared):,} bytes; the endpoint takes at most "
                         f"{max_bytes:,}.", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise InputError(f"The body is over {max_bytes:,} bytes, the endpoint's limit.",
                             status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _predict(request: Any, app: Any, route: Router, recorder: Recorder | None) -> Any:
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    request_id = (request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)[:128]
    variant = route(request_id)
    runner, metrics = app.state.runners[variant], app.state.metrics
    headers = {REQUEST_ID_HEADER: request_id, "X-Variant": variant}
    start = time.perf_counter()
    try:
        body = await _read_body(request, app.state.limits.max_body_bytes)
        x = runner.validate(parse_body(request.headers.get("content-type", ""), body),
                            app.state.limits)
        scores = await run_in_threadpool(runner.run, x)
    except InputError as exc:
        metrics.requests.labels(variant, str(exc.status)).inc()
        return JSONResponse({"detail": str(exc), "request_id": request_id},
                            status_code=exc.status, headers=headers)
    elapsed = time.perf_counter() - start
    metrics.latency.labels(variant).observe(elapsed)
    metrics.requests.labels(variant, "200").inc()
    metrics.rows.labels(variant).inc(len(x))
    predictions = scores.argmax(axis=-1) if scores.ndim == 2 else None
    if recorder is not None:
        recorder(request_id, variant, elapsed, predictions)
    if NPY_TYPE in request.headers.get("accept", ""):
        buf = io.BytesIO()
        np.save(buf, scores, allow_pickle=False)
        return Response(buf.getvalue(), media_type=NPY_TYPE, headers=headers)
    return JSONResponse({"request_id": request_id, "variant": variant,
                         "outputs": scores.tolist(),
                         "predictions": None if predictions is None else predictions.tolist()},
                        headers=headers)


def add_error_handler(app: Any) -> None:
    """Answer a stray InputError (e.g. from a route added later) with its status."""
    from fastapi.responses import JSONResponse

    @app.exception_handler(InputError)
    async def input_error(request: Any, exc: InputError) -> Any:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)


def main(argv: list[str] | None = None) -> None:
    """Serve one ONNX model (the container's entry point)."""
    import uvicorn

    p = argparse.ArgumentParser(description="Serve an ONNX model (FastAPI + ONNX Runtime)")
    p.add_argument("--model", default="model.onnx", help="the .onnx file (default model.onnx)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1; a container passes 0.0.0.0)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    p.add_argument("--output-name", default=None, help="output to return (default: first)")
    p.add_argument("--max-batch", type=int, default=256, help="rows per request (default 256)")
    p.add_argument("--max-body-mb", type=float, default=16.0,
                   help="bytes per request body, in MB (default 16)")
    args = p.parse_args(argv)
    runner = ModelRunner(args.model, threads=args.threads, output_name=args.output_name)
    limits = Limits(args.max_batch, int(args.max_body_mb * 2**20))
    app = create_app({"model": runner}, limits=limits, title=f"{Path(args.model).name}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
