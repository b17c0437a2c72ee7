"""Tab "Jobs": this session's jobs, live status and progress, cancel, open the result."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr
import pandas as pd

from core.jobs import JobManager, get_manager
from studio.context import StudioContext
from studio.runner import call

COLUMNS = ["job", "kind", "status", "progress", "message", "accuracy", "created", "duration (s)",
           "error"]


def manager(ctx: StudioContext) -> JobManager:
    """The one job manager of this studio root (shared with the REST API)."""
    return get_manager(ctx.root, measure_options=ctx.measure_options)


def owner(ctx: StudioContext, request: Any) -> str:
    return f"ui:{ctx.session_id(request)}"


def tracked(ctx: StudioContext, request: Any, kind: str, config: dict[str, Any],
            work: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap an engine call so that it runs as a recorded job of this session."""
    who = owner(ctx, request)
    return lambda cb: manager(ctx).run_here(kind, who, config, work, callbacks=cb)


def job_config(source: Any, config: Any) -> dict[str, Any]:
    """What a UI job records: its input run (None: the session baseline) and its config."""
    return {"input": getattr(source, "name", None), "config": config.to_dict()}


def jobs_frame(ctx: StudioContext, request: Any) -> pd.DataFrame:
    rows = []
    for j in manager(ctx).list(owner(ctx, request)):
        acc = (j.summary or {}).get("accuracy")
        rows.append({"job": j.id, "kind": j.kind, "status": j.status,
                     "progress": f"{j.progress * 100:.0f}%", "message": j.message,
                     "accuracy": round(acc, 4) if isinstance(acc, float) else None,
                     "created": j.created_at[:19].replace("T", " "),
                     "duration (s)": round(j.duration_s, 1) if j.duration_s else None,
                     "error": j.error or ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def job_detail(job: Any) -> dict[str, Any]:
    """A job as shown to its owner: its result folder by name, never a server path."""
    from pathlib import Path

    detail = job.to_dict()
    path = detail.pop("result_path", None)
    detail["result"] = Path(path).name if path else None
    return detail


def build_jobs_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Jobs", id="jobs", elem_id="jobs-tab") as tab:
        gr.Markdown("Every long operation of this workspace is a job, kept in a job store that "
                    "survives a restart (a job cut off by a restart is marked *interrupted*). "
                    "Scripts can do the same over the REST API at `/api/jobs` "
                    "(docs at `/api/docs`).")
        with gr.Row():
            refresh = gr.Button("Reload jobs list")
            live = gr.Checkbox(False, label="Live (every 2 s)")
        table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Jobs", interactive=False,
                             max_height=360)
        with gr.Row():
            job = gr.Dropdown([], label="Job", allow_custom_value=True, scale=3)
            cancel_btn = gr.Button("Cancel job", variant="stop", scale=1)
            open_btn = gr.Button("Open result", scale=1)
        detail = gr.JSON(label="Job")
        bundle = gr.File(label="Result bundle (.zip)")
        timer = gr.Timer(2.0, active=False)

        def on_list(request: gr.Request):
            frame = jobs_frame(ctx, request)
            ids = list(frame["job"])
            return frame, gr.update(choices=ids)

        def on_cancel(job_id: str, request: gr.Request):
            if not job_id:
                raise gr.Error("Pick a job first.")
            j = call(lambda: manager(ctx).cancel(job_id, owner(ctx, request)))
            return jobs_frame(ctx, request), job_detail(j)

        def on_open(job_id: str, request: gr.Request):
            if not job_id:
                raise gr.Error("Pick a job first.")
            j = call(lambda: manager(ctx).get(job_id, owner(ctx, request)))
            if j.status != "succeeded" or not j.result_path:
                return job_detail(j), None
            from core.artifacts import make_bundle

            return job_detail(j), str(call(lambda: make_bundle(j.result_path)))

        refresh.click(on_list, None, [table, job], api_name="list_jobs")
        tab.select(on_list, None, [table, job], api_visibility="private")
        timer.tick(on_list, None, [table, job], show_progress="hidden")
        live.change(lambda on: gr.Timer(active=bool(on)), [live], [timer],
                    api_visibility="private")
        cancel_btn.click(on_cancel, [job], [table, detail], api_name="cancel_job")
        open_btn.click(on_open, [job], [detail, bundle], api_name="open_job")
    return tab
