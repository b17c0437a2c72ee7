"""REST API beside the UI (FastAPI): sessions, uploads, jobs, their artifacts, and metrics.

A client first asks ``POST /api/session`` for a token (the server issues it: random bits plus
an HMAC with a secret kept under the root, so it is checked without any table, and a client
cannot pick one); every other request sends it in the ``X-Studio-Session`` header, and one
owner never sees another's jobs or uploads (they answer 404). Routes are registered before
the Gradio app is mounted at ``/`` (GRADIO_NOTES.md), so they are not shadowed.

Run the API alone: ``python -m studio.api --root DIR --port 8000 [--ui]``.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, File, Form, Header, HTTPException, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from core.errors import StudioError

OWNER_HEADER = "X-Studio-Session"
_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{32})$")


class JobRequest(BaseModel):
    """``POST /api/jobs`` body: the job kind and its config."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(..., description="one of GET /api/kinds", examples=["train"])
    config: dict[str, Any] = Field(default_factory=dict,
                                   examples=[{"model": "cnn", "data": "digits", "epochs": 2}])


def server_secret(root: str | Path, name: str = ".api-token-key") -> bytes:
    """This root's secret for signing tokens (created once, mode 0600, never served)."""
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    except FileExistsError:  # made earlier, or by another process just now
        pass
    for _ in range(50):  # another writer may not have finished its one line yet
        key = path.read_text().strip()
        if len(key) == 64:
            return key.encode()
        time.sleep(0.01)
    raise StudioError("The server's token key is unreadable; delete it to make a new one.")


class TokenIssuer:
    """Issues session tokens (``<random>.<HMAC of it>``) and checks them without a table.

    Issuing is rate limited per client address (``per_hour``), in a bounded in-memory table
    (the least recently seen addresses are forgotten first). The owner of a token is its
    random half, so the job store never holds a usable token.
    """

    def __init__(self, secret: bytes, *, per_hour: int = 30, max_clients: int = 10_000) -> None:
        self._secret, self.per_hour, self.max_clients = secret, int(per_hour), int(max_clients)
        self._seen: collections.OrderedDict[str, collections.deque[float]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, client: str) -> str:
        """A new token for ``client`` (an address); StudioError 429 past the hourly limit."""
        self._admit(client, time.monotonic())
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign(nonce)}"

    def owner(self, token: str | None) -> str | None:
        """The owner id of a token this server issued; None for any other string."""
        match = _TOKEN.match(token or "")
        if match is None or not hmac.compare_digest(self._sign(match[1]), match[2]):
            return None
        return f"api:{match[1]}"

    def _admit(self, client: str, now: float) -> None:
        # A sliding window per address; no library here keeps a bounded per-key log.
        with self._lock:
            times = self._seen.pop(client, None) or collections.deque()
            while times and now - times[0] > 3600:
                times.popleft()
            self._seen[client] = times
            while len(self._seen) > self.max_clients:
                self._seen.popitem(last=False)
            if len(times) >= self.per_hour:
                raise TooManyTokensError(
                    f"This address already got {self.per_hour} session tokens in the last "
                    "hour; keep using one of them (a token does not expire with the hour).")
            times.append(now)


class TooManyTokensError(StudioError):
    """A client asked for more session tokens than the hourly limit."""


def create_api(root: str | Path, *, measure_options: dict[str, Any] | None = None,
               workers: int = 1, queue_limit: int = 8, per_owner: int = 2,
               upload_limit_mb: float = 200.0, tokens_per_hour: int | None = None,
               per_address: int | None = None) -> Any:
    """The FastAPI app with the /api routes (no UI mounted). ``tokens_per_hour``: session
    tokens one address may get (default: STUDIO_TOKENS_PER_HOUR, else 30); ``per_address``:
    jobs queued or running per client address (default: STUDIO_JOBS_PER_ADDRESS, else
    ``queue_limit``)."""
    from fastapi import FastAPI

    from core.jobs import get_manager
    from core.limits import env_number
    from studio.quota import AddressShare, RequestBodyLimit

    manager = get_manager(root, measure_options=measure_options, workers=workers,
                          queue_limit=queue_limit, per_owner=per_owner)
    app = FastAPI(title="Optimization Studio API", version="1",
                  description="Jobs (train, benchmark, quantize, prune, distill, compare, "
                              "scale, tune, auto, recipe) on built-in or uploaded models and "
                              "data, their bundles, and metrics. Get a token from "
                              f"`POST /api/session`; send it in the `{OWNER_HEADER}` header.",
                  docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    app.state.job_manager = manager
    app.add_middleware(RequestBodyLimit)  # a job's config is JSON of a few hundred bytes
    per_hour = tokens_per_hour or env_number("STUDIO_TOKENS_PER_HOUR", 30)
    app.state.token_issuer = TokenIssuer(server_secret(manager.root), per_hour=per_hour)
    owner = _add_session_routes(app, app.state.token_issuer)
    _add_upload_route(app, manager, owner, upload_limit_mb)
    _add_device_routes(app, manager, owner)
    _add_method_routes(app)

    _add_error_handlers(app)
    share = AddressShare(per_address or env_number("STUDIO_JOBS_PER_ADDRESS", queue_limit))
    _add_job_routes(app, manager, owner, share)
    return app


def _add_error_handlers(app: Any) -> None:
    """A StudioError is one clear message (404/429/409/422); a bad body names each field."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from core.jobs import BusyError, JobNotFoundError, NotResumableError

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        status = 404 if isinstance(exc, JobNotFoundError) else (
            429 if isinstance(exc, (BusyError, TooManyTokensError)) else (
                409 if isinstance(exc, NotResumableError) else 422))
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        return JSONResponse({"detail": "; ".join(parts), "errors": exc.errors()},
                            status_code=422)


def _still_active(manager: Any, job: Any) -> bool:
    """Queued or running; a job the store forgot (expired) finished long ago."""
    from core.jobs import ACTIVE

    stored = manager.store.get(job.id)
    return stored is not None and stored.status in ACTIVE


def _add_job_routes(app: Any, manager: Any, owner: Any, share: Any) -> None:
    """The /api/kinds, /api/jobs (create, list, get, cancel, resume, artifacts) and
    /api/metrics routes, each behind the session token."""
    from fastapi.responses import FileResponse

    from core.artifacts import make_bundle

    def view(job: Any) -> dict[str, Any]:
        d = job.to_dict()
        d.pop("result_path", None)  # a server path is nobody's business
        d["links"] = {"self": f"/api/jobs/{job.id}", "cancel": f"/api/jobs/{job.id}/cancel",
                      "artifacts": f"/api/jobs/{job.id}/artifacts"}
        return d

    @app.get("/api/kinds", tags=["jobs"])
    def kinds() -> dict[str, Any]:
        """The job kinds this server runs."""
        return {"kinds": {k: v.summary for k, v in manager.kinds.items()}}

    @app.post("/api/jobs", status_code=201, tags=["jobs"])
    def create_job(body: JobRequest, request: Request,
                   who: str = Depends(owner)) -> dict[str, Any]:
        """Validate and queue a job; 422 on a bad config, 429 when the queue (or this
        session's or address's share of it) is full."""
        return view(queued(request, lambda: manager.submit(body.kind, who, body.config)))

    def queued(request: Request, submit: Any) -> Any:
        """``submit()`` within the client address's share of the queue."""
        address = request.client.host if request.client else "unknown"
        return share.submit(address, submit, lambda job: _still_active(manager, job))

    @app.get("/api/jobs", tags=["jobs"])
    def list_jobs(status: str | None = None, who: str = Depends(owner)) -> dict[str, Any]:
        """Your jobs, newest first."""
        return {"jobs": [view(j) for j in manager.list(who, status=status)]}

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        return view(manager.get(job_id, who))

    @app.post("/api/jobs/{job_id}/cancel", status_code=202, tags=["jobs"])
    def cancel_job(job_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        """Stop a queued or running job (cooperatively, within a second or two)."""
        return view(manager.cancel(job_id, who))

    @app.post("/api/jobs/{job_id}/resume", status_code=201, tags=["jobs"])
    def resume_job(job_id: str, request: Request,
                   who: str = Depends(owner)) -> dict[str, Any]:
        """Continue an interrupted/cancelled/failed 'tune' job's study (a new job; 409 else)."""
        return view(queued(request, lambda: manager.resume(job_id, who)))

    @app.get("/api/jobs/{job_id}/artifacts", tags=["jobs"],
             responses={200: {"content": {"application/zip": {}}}})
    def artifacts(job_id: str, who: str = Depends(owner)) -> Any:
        """The job's bundle: model files, report.json, model card and recipe (zip)."""
        job = manager.get(job_id, who)
        if job.status != "succeeded" or not job.result_path or job.kind == "upload":
            raise HTTPException(409, f"Job '{job_id}' has no artifacts ({job.kind} job, "
                                f"{job.status}).")
        bundle = make_bundle(job.result_path)
        return FileResponse(bundle, media_type="application/zip",
                            filename=f"{job.kind}-{job_id}.zip")

    @app.get("/api/metrics", tags=["metrics"])
    def metrics(who: str = Depends(owner)) -> dict[str, Any]:
        """Your completed/failed counts, mean duration and best accuracy."""
        return manager.metrics(who)


def _add_session_routes(app: Any, issuer: TokenIssuer) -> Any:
    """``POST /api/session``; returns the dependency that turns a request into its owner."""
    @app.post("/api/session", status_code=201, tags=["session"])
    def new_session(request: Request) -> dict[str, Any]:
        """A new session token (send it in the header); 429 past the hourly limit."""
        client = request.client.host if request.client else "unknown"
        return {"token": issuer.issue(client), "header": OWNER_HEADER}

    def owner(x_studio_session: str | None = Header(default=None)) -> str:
        """The owner of a request: 401 unless its token was issued by this server."""
        who = issuer.owner(x_studio_session)
        if who is None:
            raise HTTPException(401, f"Send a session token from POST /api/session in the "
                                f"{OWNER_HEADER} header (a token the server did not issue "
                                "is refused).")
        return who

    return owner


def _add_upload_route(app: Any, manager: Any, owner: Any, limit_mb: float) -> None:
    """``POST /api/uploads``: a model or data file, streamed with a size limit. An ONNX model
    whose weights lie in external-data files comes in the same request (``file`` repeated):
    one upload, one id, as the files must lie side by side to be checked and loaded."""
    from studio.uploads import receive_upload, upload_name

    @app.post("/api/uploads", status_code=201, tags=["uploads"],
              max_body_size=int(limit_mb * 2**20) + 2**16)
    def upload(file: list[UploadFile] = File(..., description="the model (.onnx …) or data "
                                             "(.csv/.npz) file; for an ONNX model with "
                                             "external data, its .onnx and each data file it "
                                             "names (e.g. model.onnx.data), 'file' repeated"),
               kind: str = Form(..., description="'model' or 'data'"),
               who: str = Depends(owner)) -> dict[str, Any]:
        """Store one of your files (or an ONNX model with its data files); name it in job
        configs as ``"upload:<id>"`` (``model`` or ``data``). Checked as in the UI (by
        content; pickles refused; external data only from the files sent with it, under the
        names the .onnx declares); 422 when refused, and refused files are deleted at once."""
        folder = manager.owner_dir(who) / "uploads" / secrets.token_hex(8)
        incoming = receive_upload([(f.file, f.filename) for f in file], kind, folder,
                                  limit_mb=limit_mb)
        names = [upload_name(f.filename) for f in file]
        config = {"kind": kind, "filename": names[0], **({"files": names} if file[1:] else {})}
        try:
            stored = manager.run_here("upload", who, config, incoming.check, result_path=folder)
        except BaseException:
            incoming.discard()
            raise
        job = next(j for j in manager.list(who, limit=50) if j.result_path == str(folder))
        return {"id": job.id, "kind": kind, "filename": names[0], "files": names,
                "stored_as": stored, "bytes": incoming.size, "use": {kind: f"upload:{job.id}"}}


def _add_device_routes(app: Any, manager: Any, owner: Any) -> None:
    """``/api/devices``: agents register a device, download the session's ONNX variants and
    post the latency they measured there (core.serving)."""
    from core.serving import DeviceStore, add_device_routes, session_variants

    app.state.device_store = store = DeviceStore(manager.root)
    add_device_routes(app, store=store, owner=owner,
                      variants_of=lambda space: session_variants(manager.root, space, manager))


def _add_method_routes(app: Any) -> None:
    """``GET /api/methods`` (areas and their methods) and each method's config JSON schema
    (read from the registry: the constraints declared on the config's fields)."""
    from core.registry import _REGISTRY, config_schema, list_areas

    def known(area: str, name: str) -> Any:
        list_areas()  # imports every area, so each method is registered
        info = _REGISTRY.get(area, {}).get(name)
        if info is None or info.config_cls is None:
            raise HTTPException(404, f"No method '{name}' with a config in area '{area}' "
                                "(see GET /api/methods).")
        return info

    @app.get("/api/methods", tags=["methods"])
    def methods() -> dict[str, Any]:
        """Every area's methods: name, summary and the link to its config's JSON schema."""
        return {"areas": {area: [
            {"name": name, "summary": info.summary,
             "schema": f"/api/methods/{area}/{name}/schema" if info.config_cls else None}
            for name, info in _REGISTRY.get(area, {}).items()] for area in list_areas()}}

    @app.get("/api/methods/{area}/{name}/schema", tags=["methods"])
    def method_schema(area: str, name: str) -> dict[str, Any]:
        """The JSON schema of a method's config (types, defaults, min/max, choices): what a
        job's ``config`` for this method accepts."""
        known(area, name)
        return config_schema(area, name)


def create_app(ctx: Any = None, demo: Any = None) -> Any:
    """The served app: /api routes first, then the Gradio UI mounted at ``/``."""
    import gradio as gr

    from studio.app import build_app, launch_kwargs
    from studio.context import StudioContext
    from studio.quota import UploadQuota

    ctx = ctx or StudioContext.from_env()
    demo = demo if demo is not None else build_app(ctx)
    app = create_api(ctx.root, measure_options=ctx.measure_options,
                     queue_limit=ctx.job_queue, per_owner=ctx.jobs_per_session,
                     upload_limit_mb=ctx.upload_limit_mb)
    kw = launch_kwargs(ctx)
    app.add_middleware(UploadQuota, quota_bytes=int(ctx.upload_quota_mb * 2**20))
    # Gradio checks that a file an event receives was uploaded (not any server path a client
    # names) only in an app that has launched; a mounted one never does, so say it has.
    demo.has_launched = True
    return gr.mount_gradio_app(app, demo, path="/", allowed_paths=kw["allowed_paths"],
                               max_file_size=kw["max_file_size"],
                               ssr_mode=False, theme=kw.get("theme"), css=kw.get("css"))


def serve(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app with uvicorn (blocking)."""
    import uvicorn

    from studio.quota import ProxiedClient

    print(f"Optimization Studio on http://{host}:{port}/ (REST API: /api/docs)", flush=True)
    # Behind a Space's proxy every request comes from the proxy: per-address limits take the
    # address that proxy appended to X-Forwarded-For (the last one; earlier ones are the
    # client's own words), and only there.
    if os.environ.get("SPACE_ID"):
        app = ProxiedClient(app)
    # Open client streams must not hold a restart (a Space sends SIGTERM) for long.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5,
                proxy_headers=False)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    p = argparse.ArgumentParser(description="Optimization Studio REST API")
    p.add_argument("--root", type=Path, default=Path(os.environ.get("STUDIO_ROOT", "results")))
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--ui", action="store_true", help="also mount the Gradio UI at /")
    p.add_argument("--fast-measure", action="store_true",
                   help="short timing budget, no memory probe (tests)")
    args = p.parse_args(argv)
    mopts = {"budget_s": 0.02, "memory": False} if args.fast_measure else {}
    if args.ui:
        import studio  # noqa: F401
        from studio.context import StudioContext

        app = create_app(StudioContext(args.root, measure_options=mopts))
    else:
        limit = float(os.environ.get("STUDIO_UPLOAD_LIMIT_MB", "200"))
        app = create_api(args.root, measure_options=mopts, upload_limit_mb=limit)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
