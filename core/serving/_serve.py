"""Serve a variant's ONNX: resolve what may be served, build the app, run it (in-thread or as
a child process)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidParameterError, ModelFileError, StudioError
from core.limits import get_limit
from core.serving._endpoint import Limits, ModelRunner, add_error_handler, create_app


@dataclass(frozen=True)
class ServedVariant:
    """What an endpoint serves: the ONNX file, the output it returns, where it came from."""

    name: str
    onnx_path: Path
    output_name: str | None
    report: dict[str, Any] = field(default_factory=dict)


def resolve_variant(path: str | Path) -> ServedVariant:
    """A studio run folder's ``model.onnx`` or an ``.onnx`` file; anything else is refused
    (an endpoint never loads TorchScript, .pt2 or pickles: they run code when loaded)."""
    from core.artifacts import check_onnx, detect_format, is_run_folder, read_report
    from core.artifacts._onnx import onnx_interface

    path = Path(path)
    report: dict[str, Any] = {}
    if path.is_dir():
        if not is_run_folder(path):
            raise InvalidParameterError("run_dir", "a studio run folder (with report.json) "
                                        "or an .onnx file", path.name)
        report = read_report(path)
        onnx_path = path / "model.onnx"
        if not onnx_path.is_file():
            raise ModelFileError(f"Run '{path.name}' has no model.onnx ({report.get('method')} "
                                 "has no ONNX form); the endpoint serves ONNX only.")
    elif path.is_file():
        if detect_format(path) != "onnx":
            raise ModelFileError(f"'{path.name}' is not ONNX; the endpoint serves ONNX only "
                                 "(TorchScript and .pt2 run code when loaded).")
        onnx_path = path
    else:
        raise InvalidParameterError("run_dir", "an existing run folder or .onnx file",
                                    path.name)
    wanted = (report.get("onnx") or {}).get("output_name")
    _, _, _, output = onnx_interface(check_onnx(onnx_path), output_name=wanted)
    return ServedVariant(path.stem if path.is_file() else path.name, onnx_path, output, report)


def endpoint_limits(*, max_batch: int | None = None, max_body_mb: float | None = None
                    ) -> Limits:
    """Per-request limits: the arguments, else STUDIO_SERVE_MAX_BATCH / _MAX_BODY_MB."""
    batch = get_limit("serve_max_batch") if max_batch is None else max_batch
    body = get_limit("serve_max_body_mb") if max_body_mb is None else max_body_mb
    if not isinstance(batch, int) or batch < 1:
        raise InvalidParameterError("max_batch", "an integer >= 1", batch)
    if not isinstance(body, (int, float)) or body <= 0:
        raise InvalidParameterError("max_body_mb", "a number > 0", body)
    return Limits(int(batch), int(body * 2**20))


def build_endpoint(run_dir: str | Path, *, threads: int = 1, max_batch: int | None = None,
                   max_body_mb: float | None = None, ab_with: str | Path | None = None,
                   ab_options: dict[str, Any] | None = None) -> Any:
    """The FastAPI app for one variant, or an A/B test of two (``ab_with``)."""
    limits = endpoint_limits(max_batch=max_batch, max_body_mb=max_body_mb)
    first = resolve_variant(run_dir)
    variants = [first] if ab_with is None else [first, resolve_variant(ab_with)]
    if len(variants) == 2 and variants[0].name == variants[1].name:
        variants[1] = dataclasses.replace(variants[1], name=variants[1].name + "#2")
    runners = {v.name: ModelRunner(v.onnx_path, threads=threads, output_name=v.output_name,
                                   name=v.name) for v in variants}
    if len(variants) == 2:
        _check_same_input(runners)
        from core.serving._ab import ABTest

        ab = ABTest(variants[0].name, variants[1].name, **dict(ab_options or {}))
        app = create_app(runners, limits=limits, router=ab.route, recorder=ab.record,
                         title=f"A/B: {variants[0].name} vs {variants[1].name}")
        ab.add_routes(app)
    else:
        app = create_app(runners, limits=limits, title=f"Endpoint: {first.name}")
    add_error_handler(app)
    app.state.variants = {v.name: v for v in variants}
    return app


def _check_same_input(runners: dict[str, ModelRunner]) -> None:
    a, b = (r.signature() for r in runners.values())
    if (a["shape"][1:], a["dtype"]) != (b["shape"][1:], b["dtype"]):
        raise InvalidParameterError("ab_with", f"a variant with the same input as the first "
                                    f"({a['shape']} {a['dtype']})", f"{b['shape']} {b['dtype']}")


class EndpointServer:
    """An endpoint served by uvicorn in a background thread (tests, benchmarks, scripts)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 sock: socket.socket | None = None) -> None:
        import uvicorn

        # Listening from here on (port 0: the system's pick, read back): a port picked free
        # and bound later by uvicorn could be taken by another process in between.
        self._socket = sock or listen(host, port)
        self.app, self.host = app, host
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        """Serve on this thread until stopped."""
        self._server.run(sockets=[self._socket])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> "EndpointServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise StudioError(f"The endpoint did not start on {self.url}.")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "EndpointServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (0: a free port the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise StudioError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None


def serve_model(run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                threads: int = 1, max_batch: int | None = None, max_body_mb: float | None = None,
                ab_with: str | Path | None = None, ab_options: dict[str, Any] | None = None,
                block: bool = True, fd: int | None = None) -> EndpointServer | None:
    """Serve a variant (and optionally A/B test it against ``ab_with``). ``block=False``
    returns a started ``EndpointServer`` (call ``.stop()``); else runs until interrupted.
    ``fd``: an inherited listening socket to serve on instead of ``host``:``port``."""
    app = build_endpoint(run_dir, threads=threads, max_batch=max_batch,
                         max_body_mb=max_body_mb, ab_with=ab_with, ab_options=ab_options)
    sock = socket.socket(fileno=fd) if fd is not None else None
    server = EndpointServer(app, host=host, port=port, sock=sock)
    if not block:
        return server.start()
    print(f"Serving {', '.join(app.state.runners)} on {server.url} (POST /predict, /metrics"
          f"{', /ab/report' if ab_with else ''})", flush=True)
    server.serve()
    return None


class EndpointProcess:
    """``studio serve-model`` in a child process on a loopback port: the studio's own server
    never loads a user's model in its process (DESIGN.md, trust rules)."""

    def __init__(self, run_dir: str | Path, *, ab_with: str | Path | None = None,
                 share_b: float = 0.5, seed: int = 0, threads: int = 1) -> None:
        # The child serves on a socket bound here and inherited: a port picked free and bound
        # later by the child could be taken (or answered) by another process in between.
        listener = listen("127.0.0.1", 0)
        self.port = listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "core.serving._cli", str(run_dir), "--fd",
                str(listener.fileno()), "--threads", str(threads)]
        if ab_with is not None:
            argv += ["--ab-with", str(ab_with), "--share-b", str(share_b), "--seed", str(seed)]
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        # stderr to a file, not a pipe: a pipe nobody reads would stall a chatty child.
        self._log = tempfile.TemporaryFile(mode="w+")
        with listener:  # the child holds its own copy
            self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL,
                                         stderr=self._log, text=True,
                                         pass_fds=(listener.fileno(),))

    def wait_ready(self, timeout: float = 60.0) -> "EndpointProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().strip()
                raise StudioError(err.splitlines()[-1] if err else "The endpoint exited.")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise StudioError("The endpoint did not become ready in time.")

    def get_json(self, route: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + route, timeout=10) as r:
            return json.loads(r.read())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
