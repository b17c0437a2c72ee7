"""Tab "Deploy": serve a variant (or A/B test two) behind an endpoint, watch the A/B report,
and connect devices that time the workspace's variants where they will run."""

from __future__ import annotations

import atexit
import http.client
import json
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import pandas as pd

from core.errors import StudioError
from studio.context import StudioContext
from studio.runner import call

MAX_ENDPOINTS = 4  # child processes across the whole server
_ENDPOINTS: dict[str, Any] = {}  # workspace folder id -> its EndpointProcess
_LOCK = threading.Lock()
_issuers: dict[Path, Any] = {}  # studio root -> the token issuer "Connect a device" uses
DEVICE_COLUMNS = ["device", "name", "cpu", "isa", "platform", "onnxruntime", "threads",
                  "variants timed", "registered"]


def _stop_all() -> None:
    for proc in list(_ENDPOINTS.values()):
        proc.stop()


atexit.register(_stop_all)


def space(ctx: StudioContext, request: Any) -> str:
    """The workspace as a device-store space (the Jobs tab's owner name)."""
    return f"ui:{ctx.session_id(request)}"


def onnx_choices(ctx: StudioContext, request: Any) -> list[tuple[str, str]]:
    """The workspace's variants that have a model.onnx (the only ones served or timed)."""
    return [(label, rid) for label, rid in ctx.variant_choices(request)
            if (ctx.session_dir(request) / rid / "model.onnx").is_file()]


def start_endpoint(ctx: StudioContext, request: Any, run_id: str, ab_id: str | None,
                   share_b: float, seed: int) -> str:
    """Start this workspace's endpoint (a child process on a loopback port)."""
    from core.serving import EndpointProcess

    if not run_id:
        raise StudioError("Pick a variant to serve.")
    first = ctx.find_run(request, run_id)
    second = ctx.find_run(request, ab_id) if ab_id else None
    key = ctx.session_id(request)
    with _LOCK:
        if key in _ENDPOINTS and _ENDPOINTS[key].alive():
            raise StudioError("This workspace already serves an endpoint; stop it first.")
        if sum(p.alive() for p in _ENDPOINTS.values()) >= MAX_ENDPOINTS:
            raise StudioError(f"This server runs {MAX_ENDPOINTS} endpoints already; try later.")
        proc = EndpointProcess(first, ab_with=second, share_b=float(share_b), seed=int(seed))
        _ENDPOINTS[key] = proc
    proc.wait_ready()
    what = f"**A/B test** of `{first.name}` (a) and `{second.name}` (b), {share_b:.0%} to b" \
        if second else f"`{first.name}`"
    return (f"Serving {what} on this server at `{proc.url}` (loopback only). Try it:\n\n"
            f"```\ncurl -H 'Content-Type: application/json' -d '{{\"inputs\": [[...]]}}' "
            f"{proc.url}/predict\n```\nAlso `/healthz`, `/readyz`, `/metrics`"
            f"{', `/feedback`, `/ab/report`' if second else ''}. To serve it elsewhere, "
            "download the variant's bundle (Comparison tab): it carries a Dockerfile.")


def endpoint_of(ctx: StudioContext, request: Any) -> Any:
    proc = _ENDPOINTS.get(ctx.session_id(request))
    if proc is None or not proc.alive():
        raise StudioError("No endpoint is running for this workspace: start one first.")
    return proc


def stop_endpoint(ctx: StudioContext, request: Any) -> str:
    with _LOCK:
        proc = _ENDPOINTS.pop(ctx.session_id(request), None)
    if proc is None:
        return "No endpoint was running."
    proc.stop()
    return "Endpoint stopped."


def send_test_traffic(ctx: StudioContext, request: Any, run_id: str, count: int) -> str:
    """Send ``count`` test rows of the variant's data set, one per request, and post each
    true label back (so the A/B report has accuracy too)."""
    from core.artifacts import read_report
    from core.runs import data_from_report

    proc = endpoint_of(ctx, request)
    X, y = data_from_report(read_report(ctx.find_run(request, run_id))).split("test")
    count = max(1, min(int(count), 2000))
    ab = len(proc.get_json("/readyz")["models"]) == 2
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)  # keep-alive
    try:
        for i in range(count):
            j = i % len(X)
            rid = f"ui-{secrets.token_hex(6)}"
            _post(conn, "/predict", {"inputs": X[j:j + 1].tolist()}, rid)
            if ab:
                _post(conn, "/feedback", {"request_id": rid, "label": int(y[j])}, None)
    finally:
        conn.close()
    return f"Sent {count} test request(s)" + (" with their labels." if ab else ".")


def _post(conn: Any, route: str, body: dict[str, Any], request_id: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["X-Request-Id"] = request_id
    conn.request("POST", route, body=json.dumps(body).encode(), headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    if resp.status != 200:
        raise StudioError(f"The endpoint answered {resp.status}: {payload[:200]!r}")


def ab_markdown(report: dict[str, Any]) -> str:
    """The A/B report in words: per-variant figures, then each difference and its test."""
    a, b = report["a"], report["b"]
    lines = ["| variant | requests | latency mean / p50 / p99 (ms) | labelled | accuracy |",
             "|---|---|---|---|---|"]
    for name, tag in ((a, "a"), (b, "b")):
        v = report["variants"][name]
        lat = v["latency_ms"]
        figs = " / ".join("—" if lat[k] is None else f"{lat[k]:.3f}" for k in
                          ("mean", "p50", "p99"))
        acc = "—" if v["accuracy"] is None else f"{v['accuracy']:.4f}"
        lines.append(f"| {tag}: `{name}` | {v['requests']} | {figs} | {v['labelled_rows']} | "
                     f"{acc} |")
    conf = f"{report['confidence']:.0%}"
    for part, unit in (("latency", "difference_ms"), ("accuracy", "difference")):
        r = report[part]
        if r.get("significant") is None:
            lines.append(f"\n**{part}**: {r['status']}.")
            continue
        lines.append(f"\n**{part}** (b − a): {r[unit]:+.4f} ({conf} CI {r['ci'][0]:+.4f} … "
                     f"{r['ci'][1]:+.4f}), {r['test']}, p = {r['p_value']:.3g}: "
                     f"**{r['status']}**.")
    return "\n".join(lines)


def connect_device(ctx: StudioContext, request: Any) -> tuple[str, str]:
    """A session token linked to this workspace, the agent command, and agent.py to copy."""
    from core.serving import DeviceStore
    from core.serving import agent as agent_module
    from studio.api import TokenIssuer, server_secret

    issuer = _issuers.get(ctx.root) or _issuers.setdefault(
        ctx.root, TokenIssuer(server_secret(ctx.root)))  # one hourly limit per studio root
    client = getattr(getattr(request, "client", None), "host", None) or "ui"
    token = issuer.issue(f"deploy:{client}")
    DeviceStore(ctx.root).link(issuer.owner(token), space(ctx, request))
    copy = ctx.session_dir(request) / "agent" / "agent.py"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(agent_module.__file__, copy)
    headers = getattr(request, "headers", None) or {}
    host = headers.get("host", "STUDIO_HOST:7860")
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip()  # a Space: https
    text = (f"On the device (it needs Python with `onnxruntime` and `numpy` only):\n\n"
            f"```\npython agent.py --server {scheme}://{host} --token {token}\n```\n"
            "It downloads this workspace's ONNX variants, times them with the studio's "
            "protocol and sends the figures back; press **Refresh devices** afterwards. "
            "Keep the token private: it reads this workspace's ONNX models.")
    return text, str(copy)


def devices_frame(ctx: StudioContext, request: Any) -> tuple[pd.DataFrame, list[Any]]:
    from core.serving import DeviceStore

    records = DeviceStore(ctx.root).list(space(ctx, request))
    rows = [{"device": r["device_id"], "name": r["manifest"].get("name"),
             "cpu": r["manifest"].get("cpu"), "isa": ", ".join(r["manifest"].get("isa") or []),
             "platform": r["manifest"].get("platform"),
             "onnxruntime": r["manifest"].get("onnxruntime"),
             "threads": r["manifest"].get("threads"), "variants timed": len(r["figures"]),
             "registered": r["registered_at"][:19].replace("T", " ")} for r in records]
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS), records


def ranking_for(ctx: StudioContext, request: Any, device_id: str,
                runs: list[Path] | None = None) -> str:
    """The workspace's variants ranked by a device's latency, with its manifest."""
    from core.serving import DeviceStore, device_ranking, ranking_markdown

    if not device_id:
        raise StudioError("Pick a device (connect one first).")
    record = DeviceStore(ctx.root).get(space(ctx, request), device_id)
    names = [p.name for p in runs] if runs is not None else [r for _, r in
                                                               onnx_choices(ctx, request)]
    return ranking_markdown(device_ranking(record, names))


def device_ranking_box(ctx: StudioContext, runs_of: Callable[[Any], list[Path]]) -> None:
    """"Rank by a device's latency" (used by the Comparison tab): pick a device, see the
    compared variants ordered by what that device measured."""
    with gr.Accordion("Rank by a device's latency (Deploy tab: connect a device)",
                      open=False):
        with gr.Row():
            device = gr.Dropdown([], label="Device", scale=3)
            rank_btn = gr.Button("Rank", scale=1)
        ranking = gr.Markdown("")

    def on_rank(device_id: str, request: gr.Request) -> str:
        return call(lambda: ranking_for(ctx, request, device_id, runs_of(request)))

    def on_open(request: gr.Request) -> Any:
        _, records = devices_frame(ctx, request)
        return gr.update(choices=_device_choices(records))

    rank_btn.click(on_rank, [device], [ranking], api_name="rank_by_device")
    device.focus(on_open, None, [device], api_visibility="private")


def _device_choices(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"{r['manifest'].get('name')} · {r['manifest'].get('cpu')} · "
             f"{r['device_id']}", r["device_id"]) for r in records]


def build_deploy_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Deploy", id="deploy", elem_id="deploy-tab") as tab:
        gr.Markdown("Serve a variant's ONNX model behind an HTTP endpoint (FastAPI + ONNX "
                    "Runtime, metrics at `/metrics`), or **A/B test** two variants: a share of "
                    "requests goes to each, and the report compares latency and (from "
                    "labels posted back) accuracy with a confidence interval and a test.")
        with gr.Row():
            variant = gr.Dropdown([], label="Variant to serve (a)", scale=3)
            ab_variant = gr.Dropdown([], label="A/B test against (b, optional)", scale=3)
        with gr.Row():
            share = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Share of requests to b")
            seed = gr.Number(0, precision=0, label="Split seed")
        with gr.Row():
            start = gr.Button("Start endpoint", variant="primary")
            stop = gr.Button("Stop endpoint", variant="stop")
        status = gr.Markdown("")
        with gr.Row():
            count = gr.Number(200, precision=0, label="Test requests (the variant's test rows)")
            send = gr.Button("Send test requests with labels")
            report_btn = gr.Button("Refresh A/B report")
        ab_text = gr.Markdown("")
        ab_json = gr.JSON(label="A/B report (GET /ab/report)")
        gr.Markdown("### Devices\nTime the variants on the device they will run on: "
                    "**Connect a device** gives a one-file agent and its command.")
        with gr.Row():
            connect = gr.Button("Connect a device")
            refresh = gr.Button("Refresh devices")
        connect_text = gr.Markdown("")
        agent_file = gr.File(label="agent.py (needs onnxruntime + numpy)")
        devices = gr.Dataframe(pd.DataFrame(columns=DEVICE_COLUMNS), label="Devices",
                               interactive=False)
        with gr.Row():
            device = gr.Dropdown([], label="Device", scale=3)
            rank_btn = gr.Button("Rank variants by this device", scale=1)
        ranking = gr.Markdown("")

        def on_open(request: gr.Request):
            choices = onnx_choices(ctx, request)
            return (gr.update(choices=choices), gr.update(choices=[("(none)", "")] + choices))

        def on_start(run_id, ab_id, share_b, split_seed, request: gr.Request) -> str:
            return call(lambda: start_endpoint(ctx, request, run_id, ab_id or None, share_b,
                                               int(split_seed or 0)))

        def on_report(request: gr.Request):
            proc = call(lambda: endpoint_of(ctx, request))
            if len(proc.get_json("/readyz")["models"]) < 2:
                return "This endpoint serves one variant: start it with a variant b.", None
            report = proc.get_json("/ab/report")
            return ab_markdown(report), report

        def on_stop(request: gr.Request) -> str:
            return call(lambda: stop_endpoint(ctx, request))

        def on_send(run_id: str, n: float, request: gr.Request) -> str:
            return call(lambda: send_test_traffic(ctx, request, run_id, int(n or 0)))

        def on_connect(request: gr.Request):
            return call(lambda: connect_device(ctx, request))

        def on_rank(device_id: str, request: gr.Request) -> str:
            return call(lambda: ranking_for(ctx, request, device_id))

        def on_devices(request: gr.Request):
            frame, records = devices_frame(ctx, request)
            return frame, gr.update(choices=_device_choices(records))

        tab.select(on_open, None, [variant, ab_variant], api_visibility="private")
        start.click(on_start, [variant, ab_variant, share, seed], [status],
                    api_name="start_endpoint")
        stop.click(on_stop, None, [status], api_name="stop_endpoint")
        send.click(on_send, [variant, count], [status], api_name="send_test_requests",
                   **ctx.engine())
        report_btn.click(on_report, None, [ab_text, ab_json], api_name="ab_report")
        connect.click(on_connect, None, [connect_text, agent_file], api_name="connect_device")
        refresh.click(on_devices, None, [devices, device], api_name="list_devices")
        rank_btn.click(on_rank, [device], [ranking], api_name="rank_variants_by_device")
    return tab
