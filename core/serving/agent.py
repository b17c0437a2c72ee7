"""Optimization Studio device agent: time a session's variants on THIS device.

One file; needs only onnxruntime and numpy (and the Python standard library), so it runs on a
Raspberry Pi or a laptop without the studio installed::

    python agent.py --server http://studio-host:7860 --token TOKEN

It registers the device (platform, CPU, instruction sets, ONNX Runtime version, threads),
downloads the session's variants (ONNX only, checked against their SHA-256), times them with
the studio's protocol (warm-up, then rounds interleaved across variants, p50/p95 per batch
size) and posts the figures back. The token is a session token (``POST /api/session``, or the
Deploy tab's "Connect a device").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

TOKEN_HEADER = "X-Studio-Session"
# The studio's latency protocol (core.measure's defaults), duplicated because this file must
# run without the studio; tests/test_agent.py checks that it matches. The server's
# GET /api/devices/protocol wins when it answers.
PROTOCOL: dict[str, Any] = {"version": 1, "batch_sizes": [1, 64], "budget_s": 0.4,
                            "rounds": 10, "threads": 1, "warmup_min_calls": 5,
                            "warmup_s": 0.05, "warmup_max_calls": 200}
_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
        "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp",
        "i8mm", "sve")
_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
          "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class AgentError(Exception):
    """The studio refused a request, or a download did not match its digest."""


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in _ISA if f in flags]


def device_manifest(threads: int, name: str | None = None) -> dict[str, Any]:
    """What this device is: name, platform, CPU, instruction sets, library versions."""
    import onnxruntime as ort

    cpu, isa = _cpu()
    return {"name": name or socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu": cpu, "isa": isa, "cores": os.cpu_count(),
            "threads": threads, "onnxruntime": ort.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


class StudioClient:
    """JSON over HTTP to the studio's /api/devices routes, with the session token."""

    def __init__(self, server: str, token: str, *, timeout: float = 60.0) -> None:
        self.base, self.token, self.timeout = server.rstrip("/"), token, timeout

    def _open(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + route, data=data, method=method)
        req.add_header(TOKEN_HEADER, self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = exc.reason
            raise AgentError(f"{method} {route}: {exc.code} {detail}") from None
        except urllib.error.URLError as exc:
            raise AgentError(f"Cannot reach {self.base}: {exc.reason}") from None

    def call(self, method: str, route: str, body: Any = None) -> Any:
        with self._open(method, route, body) as resp:
            return json.loads(resp.read())

    def download(self, route: str, dest: Path, sha256: str | None) -> None:
        digest = hashlib.sha256()
        with self._open("GET", route) as resp, open(dest, "wb") as fh:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
        if sha256 and digest.hexdigest() != sha256:
            dest.unlink(missing_ok=True)
            raise AgentError(f"{dest.name}: the download does not match its SHA-256.")


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _Timed:
    """One variant: its session and a feed of each batch size (seeded standard normal)."""

    def __init__(self, session: Any, seed: int = 0) -> None:
        self.session, inp = session, session.get_inputs()[0]
        self.name, self.dtype = inp.name, _TYPES.get(inp.type, np.float32)
        self.dims = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        self.fixed = self.dims[0] if self.dims else None
        self.rng = np.random.default_rng(seed)

    def accepts(self, bs: int) -> bool:
        return self.fixed is None or bs == self.fixed

    def feed(self, bs: int) -> dict[str, np.ndarray]:
        shape = [bs] + [d or 1 for d in self.dims[1:]]
        x = self.rng.standard_normal(shape)
        if np.issubdtype(self.dtype, np.integer):
            x = np.abs(x * 10)
        return {self.name: x.astype(self.dtype)}

    def __call__(self, feed: dict[str, np.ndarray]) -> None:
        self.session.run(None, feed)


def time_variants(variants: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    """p50/p95 per batch size per variant: warm-up, then rounds A B A B … (the studio's
    protocol, core.measure.interleaved_latency)."""
    timed = {name: _Timed(sess) for name, sess in variants.items()}
    sizes = sorted(set(protocol["batch_sizes"]) | {t.fixed for t in timed.values() if t.fixed})
    out: dict[str, dict[str, Any]] = {name: {} for name in timed}
    for bs in sizes:
        group = {n: t for n, t in timed.items() if t.accepts(bs)}
        feeds = {n: t.feed(bs) for n, t in group.items()}
        calls = {n: _calls_per_round(t, feeds[n], protocol) for n, t in group.items()}
        times: dict[str, list[float]] = {n: [] for n in group}
        for _ in range(protocol["rounds"]):
            for n, t in group.items():
                for _ in range(calls[n]):
                    t0 = time.perf_counter_ns()
                    t(feeds[n])
                    times[n].append((time.perf_counter_ns() - t0) / 1e6)
        for n, ts in times.items():
            arr = np.asarray(ts)
            out[n][str(bs)] = {"p50": float(np.percentile(arr, 50)),
                               "p95": float(np.percentile(arr, 95)), "runs": int(arr.size)}
    return out


def _calls_per_round(t: _Timed, feed: dict[str, np.ndarray], protocol: dict[str, Any]) -> int:
    start, n = time.perf_counter(), 0
    while n < protocol["warmup_min_calls"] or (
            time.perf_counter() - start < protocol["warmup_s"]
            and n < protocol["warmup_max_calls"]):
        t(feed)
        n += 1
    per_call = (time.perf_counter() - start) / n
    return max(1, int(protocol["budget_s"] / protocol["rounds"] / max(per_call, 1e-6)))


def run_agent(server: str, token: str, *, workdir: str | Path | None = None,
              threads: int | None = None, name: str | None = None,
              log: Any = print) -> dict[str, Any]:
    """Register, download, time and report; returns what was posted."""
    client = StudioClient(server, token)
    try:
        protocol = {**PROTOCOL, **client.call("GET", "/api/devices/protocol")}
    except AgentError:
        protocol = dict(PROTOCOL)
    threads = int(threads or protocol["threads"])
    protocol["threads"] = threads
    device = client.call("POST", "/api/devices",
                         {"manifest": device_manifest(threads, name)})["device_id"]
    log(f"registered device {device}")
    listing = client.call("GET", "/api/devices/variants")["variants"]
    if not listing:
        raise AgentError("The session has no variants with an ONNX model to time yet.")
    folder = Path(workdir or tempfile.mkdtemp(prefix="studio-agent-"))
    sessions = {}
    for v in listing:
        vdir = folder / v["id"]
        vdir.mkdir(parents=True, exist_ok=True)
        for f in v["files"]:
            route = f"/api/devices/variants/{urllib.parse.quote(v['id'])}/files/" \
                    f"{urllib.parse.quote(f['name'])}"
            client.download(route, vdir / Path(f["name"]).name, f.get("sha256"))
        sessions[v["id"]] = _session(vdir / "model.onnx", threads)
        log(f"downloaded {v['id']}")
    latency = time_variants(sessions, protocol)
    posted = {}
    for run_id, lat in latency.items():
        posted[run_id] = client.call("POST", f"/api/devices/{device}/figures",
                                     {"run_id": run_id, "latency_ms": lat, "threads": threads,
                                      "protocol": protocol})
        summary = ", ".join(f"b{bs} p50 {v['p50']:.3f} ms" for bs, v in lat.items())
        log(f"{run_id}: {summary}")
    return {"device_id": device, "figures": latency}


def main(argv: list[str] | None = None) -> int:
    # A deliberate copy of `studio agent`'s options (core/serving/_cli.py): runs without studio.
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="the studio's URL")
    p.add_argument("--token", required=True, help="a session token of the studio")
    p.add_argument("--workdir", default=None, help="where models are kept (default: a temp dir)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: protocol, 1)")
    p.add_argument("--name", default=None, help="device name (default: host name)")
    args = p.parse_args(argv)
    try:
        run_agent(args.server, args.token, workdir=args.workdir, threads=args.threads,
                  name=args.name)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
