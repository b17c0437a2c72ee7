"""Serving goals: cold start to an interactive page, idle memory, small-job latency under load.

Starts `python launch.py` as a Space would (GRADIO_SERVER_NAME/PORT), times until the page
and its config answer, reads the server's resident memory at idle (with its children), then
runs a small job (1-epoch MLP on wine) from 1, 5 and 20 concurrent clients and reports the
end-to-end p50/p95. Goals (issue 9): cold start ≤ 15 s, idle RSS ≤ 1.5 GB.
Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil
from _common import ROOT, write_result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 120.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            urllib.request.urlopen(url + "config", timeout=2).read()
            urllib.request.urlopen(url, timeout=2).read()
            return time.perf_counter() - start
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the studio did not come up")


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs) / 2**20


def job_latencies(url: str, clients: int) -> dict:
    from gradio_client import Client

    def one(i: int) -> float | None:
        client = Client(url, analytics_enabled=False, verbose=False)
        t0 = time.perf_counter()
        try:
            client.predict("wine", "mlp", None, "label", 1, 0.01, api_name="/train_baseline")
        except Exception:
            return None
        return time.perf_counter() - t0

    with cf.ThreadPoolExecutor(clients) as pool:
        times = list(pool.map(one, range(clients)))
    ok = sorted(t for t in times if t is not None)
    q = statistics.quantiles(ok, n=20) if len(ok) > 1 else ok * 19
    return {"clients": clients, "completed": len(ok), "refused": clients - len(ok),
            "p50_s": statistics.median(ok) if ok else None, "p95_s": q[18] if ok else None}


def _stopped_within(proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.perf_counter()
    proc.wait(timeout=timeout)
    return time.perf_counter() - t0


def main() -> dict:
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               STUDIO_ROOT=tempfile.mkdtemp(), NO_PROXY="localhost,127.0.0.1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "launch.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url)
        cold = time.perf_counter() - t0
        time.sleep(3)
        idle = rss_mb(proc.pid)
        loads = [job_latencies(url, n) for n in (1, 5, 20)]
        after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            stop_s = _stopped_within(proc, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    result = {"cold_start_s": cold, "cold_start_goal_s": 15, "idle_rss_mb": idle,
              "idle_rss_goal_mb": 1536, "rss_after_load_mb": after, "small_job": loads,
              "stop_after_sigterm_s": stop_s}
    write_result("serve", result)
    return result


if __name__ == "__main__":
    r = main()
    print(f"cold start {r['cold_start_s']:.1f} s (goal ≤ 15), idle RSS {r['idle_rss_mb']:.0f} MB "
          "(goal ≤ 1536)")
    for row in r["small_job"]:
        print(row)
