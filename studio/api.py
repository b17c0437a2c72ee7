"""REST API beside the UI (FastAPI): jobs, their artifacts, and metrics.

Every request names its owner in the ``X-Studio-Session`` header (any unguessable token the
client keeps); one owner never sees another's jobs (they answer 404). Routes are registered
before the Gradio app is mounted at ``/`` (GRADIO_NOTES.md), so they are not shadowed.

Run the API alone: ``python -m studio.api --root DIR --port 8000 [--ui]``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from core.errors import StudioError

OWNER_HEADER = "X-Studio-Session"
_OWNER = re.compile(r"^[A-Za-z0-9_.~-]{8,128}$")


class JobRequest(BaseModel):
    """``POST /api/jobs`` body: the job kind and its config."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(..., description="one of GET /api/kinds", examples=["train"])
    config: dict[str, Any] = Field(default_factory=dict,
                                   examples=[{"model": "cnn", "data": "digits", "epochs": 2}])


def owner(x_studio_session: str | None = Header(default=None)) -> str:
    """The owner of a request, from its session header (401 without one)."""
    if not x_studio_session or not _OWNER.match(x_studio_session):
        raise HTTPException(401, f"Send a session token (8–128 letters, digits, '-', "
                            f"'_', '.', '~') in the {OWNER_HEADER} header.")
    return f"api:{x_studio_session}"


def create_api(root: str | Path, *, measure_options: dict[str, Any] | None = None,
               workers: int = 1, queue_limit: int = 8, per_owner: int = 2) -> Any:
    """The FastAPI app with the /api routes (no UI mounted)."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse

    from core.artifacts import make_bundle
    from core.jobs import BusyError, JobNotFoundError, NotResumableError, get_manager

    manager = get_manager(root, measure_options=measure_options, workers=workers,
                          queue_limit=queue_limit, per_owner=per_owner)
    app = FastAPI(title="Optimization Studio API", version="1",
                  description="Jobs (train, benchmark, quantize, prune, distill, compare, "
                              "scale, tune, auto, recipe), their bundles, and metrics. Send "
                              "your session "
                              f"token in the `{OWNER_HEADER}` header.",
                  docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    app.state.job_manager = manager

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        status = 404 if isinstance(exc, JobNotFoundError) else (
            429 if isinstance(exc, BusyError) else (
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
    def create_job(body: JobRequest, who: str = Depends(owner)) -> dict[str, Any]:
        """Validate and queue a job; 422 on a bad config, 429 when the queue is full."""
        return view(manager.submit(body.kind, who, body.config))

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
    def resume_job(job_id: str, who: str = Depends(owner)) -> dict[str, Any]:
        """Continue an interrupted/cancelled/failed 'tune' job's study (a new job; 409 else)."""
        return view(manager.resume(job_id, who))

    @app.get("/api/jobs/{job_id}/artifacts", tags=["jobs"],
             responses={200: {"content": {"application/zip": {}}}})
    def artifacts(job_id: str, who: str = Depends(owner)) -> Any:
        """The job's bundle: model files, report.json, model card and recipe (zip)."""
        job = manager.get(job_id, who)
        if job.status != "succeeded" or not job.result_path:
            raise HTTPException(409, f"Job '{job_id}' has no artifacts (status: {job.status}).")
        bundle = make_bundle(job.result_path)
        return FileResponse(bundle, media_type="application/zip",
                            filename=f"{job.kind}-{job_id}.zip")

    @app.get("/api/metrics", tags=["metrics"])
    def metrics(who: str = Depends(owner)) -> dict[str, Any]:
        """Your completed/failed counts, mean duration and best accuracy."""
        return manager.metrics(who)

    return app


def create_app(ctx: Any = None, demo: Any = None) -> Any:
    """The served app: /api routes first, then the Gradio UI mounted at ``/``."""
    import gradio as gr

    from studio.app import build_app, launch_kwargs
    from studio.context import StudioContext

    ctx = ctx or StudioContext.from_env()
    demo = demo if demo is not None else build_app(ctx)
    app = create_api(ctx.root, measure_options=ctx.measure_options,
                     queue_limit=ctx.job_queue, per_owner=ctx.jobs_per_session)
    kw = launch_kwargs(ctx)
    return gr.mount_gradio_app(app, demo, path="/", allowed_paths=kw["allowed_paths"],
                               max_file_size=kw["max_file_size"],
                               ssr_mode=False, theme=kw.get("theme"))


def serve(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app with uvicorn (blocking)."""
    import uvicorn

    print(f"Optimization Studio on http://{host}:{port}/ (REST API: /api/docs)", flush=True)
    # Open client streams must not hold a restart (a Space sends SIGTERM) for long.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


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
        app = create_api(args.root, measure_options=mopts)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
