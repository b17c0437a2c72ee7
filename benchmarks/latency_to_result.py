"""Latency to a result (a goal, not a test): the studio's overhead over doing it by hand.

1. ``studio quantize --method ort-static-int8`` of an ONNX file on an .npz data file vs a
   by-hand script (``quantize_static`` with the same settings + an accuracy check), each a fresh
   process, interleaved, median of the rounds (goal: within 1.3x), on ResNet-18 (its layout
   and widths, 11 M parameters: the issue's model) and on a small ResNet-style net (0.1 M: the
   studio's fixed costs weigh most there). Both sides cache their bytecode after one first run.
2. Cold start (process start to HTTP 200 on /; also the CPU seconds the process tree used by
   then, steadier than wall time on a shared machine) and idle RSS (whole process tree, after
   start) of the studio app (``launch.py``) vs a bare Gradio app, interleaved, after one first
   start of each that caches their bytecode (goals: within 1.3x and 1.5x).

Writes ``benchmarks/results/latency_to_result.json``.
Run under the shared lock:
``flock /tmp/bench.lock .venv/bin/python benchmarks/latency_to_result.py``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOALS = {"quantize_vs_by_hand": 1.3, "cold_start_vs_gradio": 1.3, "idle_rss_vs_gradio": 1.5}

BY_HAND = '''
import sys, numpy as np, onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      CalibrationMethod, quantize_static)
src, data, out = sys.argv[1:4]
d = np.load(data); X, y = d["X"].astype(np.float32), d["y"]
rng = np.random.default_rng(0); idx = rng.permutation(len(X))
test, train = idx[: len(X) // 5], idx[len(X) // 5:]
name = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name
class Reader(CalibrationDataReader):
    def __init__(self):
        rows = X[train[:256]]
        self.it = iter([{name: rows[i:i + 32]} for i in range(0, len(rows), 32)])
    def get_next(self):
        return next(self.it, None)
quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax)
sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
pred = np.concatenate([sess.run(None, {name: X[test][i:i + 256]})[0].argmax(1)
                       for i in range(0, len(test), 256)])
print("accuracy", float((pred == y[test]).mean()))
'''

# The same quantization, then what the studio's report holds, measured by hand with ONNX
# Runtime alone: accuracy of FP32 and INT8 on validation and test rows, and p50 latency of both
# at batch 1 and 64 (one thread, warm-up, 6 interleaved rounds of ~40 ms; no peak memory).
BY_HAND_MEASURED = BY_HAND + '''
val = idx[len(X) // 5: len(X) // 5 + len(X) * 3 // 20]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
one = {k: ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"])
       for k, p in (("fp32", src), ("int8", out))}
for k, s in one.items():
    for rows in (val, test):
        acc = float((s.run(None, {name: X[rows]})[0].argmax(1) == y[rows]).mean())
import time
for bs in (1, 64):
    xb = np.resize(X, (bs, *X.shape[1:]))
    calls = {}
    for k, s in one.items():
        t = time.perf_counter(); n = 0
        while n < 2 or time.perf_counter() - t < 0.05:
            s.run(None, {name: xb}); n += 1
        calls[k] = max(1, int(0.04 / ((time.perf_counter() - t) / n)))
    times = {k: [] for k in one}
    for _ in range(6):
        for k, s in one.items():
            for _ in range(calls[k]):
                t = time.perf_counter(); s.run(None, {name: xb})
                times[k].append(time.perf_counter() - t)
    print(bs, {k: float(np.median(v)) for k, v in times.items()})
'''

BARE_GRADIO = '''
import sys, gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), prevent_thread_lock=False)
'''


def _env() -> dict[str, str]:
    return {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONWARNINGS": "ignore"}


def _timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None
           ) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env or _env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _load() -> list[float] | None:
    """The 1/5/15-minute load averages (other processes on the machine slow both sides)."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _timing_rounds(report_path: Path) -> dict[str, int]:
    """Rounds the report's latency runs took per batch size (the protocol stops a batch size
    early once its estimate is stable; at most 10)."""
    lat = (json.loads(report_path.read_text()).get("result") or {}).get("latency_ms") or {}
    return {bs: e.get("rounds") for bs, e in lat.items() if isinstance(e, dict)}


def _timing_protocol_s(report_path: Path) -> float:
    """Seconds the report's interleaved latency runs took (runs x p50, baseline and result,
    every batch size and thread count): the part of the wait the by-hand script does not do."""
    report = json.loads(report_path.read_text())
    total = 0.0
    for side in ("baseline", "result"):
        m = report.get(side) or {}
        tables = [m.get("latency_ms") or {}]
        tables += list(((m.get("extra") or {}).get("latency_by_threads") or {}).values())
        for table in tables:
            total += sum(e["runs"] * e["p50"] / 1000 for e in table.values()
                         if isinstance(e, dict) and "runs" in e)
    return total


# ResNet-style widths per stage (tests/helpers/zoo.py: stride-2 3x3 stem, two BasicBlocks a stage)
MODELS = {"resnet18": (64, 128, 256, 512), "resnet_small": (8, 16, 32)}


def quantize_side_by_side(scratch: Path, rounds: int, name: str) -> dict[str, Any]:
    import torch

    from core.artifacts import export_onnx
    from tests.helpers import zoo

    data = zoo.digits_3x32()
    model = zoo.resnet_like(10, widths=MODELS[name]).eval()
    scratch = scratch / name
    scratch.mkdir()
    onnx_path, npz = scratch / f"{name}.onnx", scratch / "digits3x32.npz"
    export_onnx(model, onnx_path, torch.from_numpy(data.X_test[:1]))
    zoo.save_npz(data, npz)
    (scratch / "by_hand.py").write_text(BY_HAND)
    (scratch / "by_hand_measured.py").write_text(BY_HAND_MEASURED)
    py, env = sys.executable, _app_env(scratch)
    studio = lambda i: [py, "-m", "core.cli", "quantize", "--model", str(onnx_path),  # noqa: E731
                        "--data", str(npz), "--method", "ort-static-int8",
                        "--out", str(scratch / f"studio-{i}")]
    hand = lambda i, script="by_hand.py": [  # noqa: E731
        py, str(scratch / script), str(onnx_path), str(npz), str(scratch / f"hand-{i}.onnx")]
    # bytecode, file caches and the per-machine caches (GEMM peaks, CPU facts), both sides
    _timed(studio("warm"), ROOT, env)
    _timed(hand("warm"), ROOT, env)
    sides = ("studio", "by_hand", "by_hand_measured")
    times: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    protocol: list[float] = []
    loads: list[list[float] | None] = []
    timing_rounds: list[dict[str, int]] = []
    for i in range(rounds):
        loads.append(_load())
        for side, cmd in (("studio", studio(i)), ("by_hand", hand(i)),
                          ("by_hand_measured", hand(i, "by_hand_measured.py"))):
            wall, used = _timed(cmd, ROOT, env)
            times[side].append(wall)
            cpu[side].append(used)
        protocol.append(_timing_protocol_s(scratch / f"studio-{i}" / "report.json"))
        timing_rounds.append(_timing_rounds(scratch / f"studio-{i}" / "report.json"))
    ratios = [s / h for s, h in zip(times["studio"], times["by_hand"])]
    rest = [(s - p) / h for s, p, h in zip(times["studio"], protocol, times["by_hand"])]
    same_work = [s / h for s, h in zip(times["studio"], times["by_hand_measured"])]
    return {"model": f"ResNet-style, widths {MODELS[name]}, "
                     f"{sum(p.numel() for p in model.parameters())} parameters",
            "seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
            "ratio_median": statistics.median(ratios), "goal": GOALS["quantize_vs_by_hand"],
            "cpu_seconds": cpu,
            "cpu_ratio_median": statistics.median(
                [s / h for s, h in zip(cpu["studio"], cpu["by_hand"])]),
            "timing_protocol_s": protocol, "timing_rounds_by_batch": timing_rounds,
            "load_average_before_each_round": loads,
            "ratio_without_timing_protocol_median": statistics.median(rest),
            "ratio_vs_by_hand_measured_median": statistics.median(same_work),
            "cpu_ratio_vs_by_hand_measured_median": statistics.median(
                [s / h for s, h in zip(cpu["studio"], cpu["by_hand_measured"])]),
            "studio_command": "studio quantize --model M.onnx --data D.npz --method "
                              "ort-static-int8 --out DIR (measures baseline and result: "
                              "accuracy, latency b1/b64, memory)",
            "by_hand": "quantize_static (QDQ, U8S8, MinMax, 256 calibration rows) + accuracy "
                       "of the INT8 model on a fifth of the rows",
            "by_hand_measured": "the same, then FP32 and INT8 accuracy on validation and test "
                                "rows and their p50 latency at batch 1 and 64 (1 thread, "
                                "interleaved rounds), with ONNX Runtime alone; no peak memory"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list[Any]:
    import psutil

    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _tree_rss_mb(pid: int) -> float:
    return sum(p.memory_info().rss for p in _tree(pid) if p.is_running()) / 2**20


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process tree has used so far, reaped children too."""
    total = 0.0
    for p in _tree(pid):
        t = p.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _serve(cmd: list[str], port: int, root: Path, env: dict[str, str]) -> dict[str, float]:
    """Seconds to HTTP 200 on /, CPU seconds of the process tree by then, and idle RSS of the
    process tree in MB 3 s after."""
    env = {**env, "STUDIO_ROOT": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[1]} exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("no answer within 300 s")
        cold = time.perf_counter() - t0
        cpu = _tree_cpu_s(proc.pid)
        time.sleep(3.0)
        return {"cold_start_s": cold, "cold_start_cpu_s": cpu,
                "idle_rss_mb": _tree_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _app_env(scratch: Path) -> dict[str, str]:
    """Both servers cache their bytecode under scratch (as a deployed app does after its first
    start), even where the caller's environment says PYTHONDONTWRITEBYTECODE."""
    env = {k: v for k, v in _env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}


def app_side_by_side(scratch: Path, rounds: int) -> dict[str, Any]:
    (scratch / "bare.py").write_text(BARE_GRADIO)
    env = _app_env(scratch)
    keys = ("cold_start_s", "cold_start_cpu_s", "idle_rss_mb")
    figures: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in keys} for name in ("studio", "bare_gradio")}

    def cmd(name: str, port: int) -> list[str]:
        return [sys.executable, "launch.py", "--port", str(port)] if name == "studio" else \
            [sys.executable, str(scratch / "bare.py"), str(port)]

    # first start of each: compiles and caches the bytecode (file caches warm too)
    first = {}
    for name in figures:
        port = _free_port()
        first[name] = _serve(cmd(name, port), port, scratch / f"root-first-{name}", env)
    loads = []
    for i in range(rounds):
        loads.append(_load())
        for name in figures:
            port = _free_port()
            got = _serve(cmd(name, port), port, scratch / f"root-{i}", env)
            for k in keys:
                figures[name][k].append(got[k])
    med = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
    return {"figures": figures, "median": med, "load_average_before_each_round": loads,
            "first_start_compiling_bytecode": first,
            "first_start_note": "studio first: it compiles Gradio's bytecode and its own; "
                                "bare Gradio's first start then finds Gradio's cached",
            "cold_start_ratio": med["studio"]["cold_start_s"]
            / med["bare_gradio"]["cold_start_s"],
            "cold_start_cpu_ratio": med["studio"]["cold_start_cpu_s"]
            / med["bare_gradio"]["cold_start_cpu_s"],
            "idle_rss_ratio": med["studio"]["idle_rss_mb"] / med["bare_gradio"]["idle_rss_mb"],
            "goals": {"cold_start": GOALS["cold_start_vs_gradio"],
                      "idle_rss": GOALS["idle_rss_vs_gradio"]}}


def main() -> None:
    from benchmarks._common import write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    ap.add_argument("--only", choices=("quantize", "app"), default=None,
                    help="run one of the two comparisons (default: both)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"models of the quantize comparison, of {list(MODELS)}")
    args = ap.parse_args()
    quant = app = None
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        if args.only in (None, "quantize"):
            quant = {name: quantize_side_by_side(scratch, args.rounds, name)
                     for name in args.models.split(",")}
            for name, q in quant.items():
                print(f"{name}: studio quantize {q['median_s']['studio']:.2f} s vs by hand "
                      f"{q['median_s']['by_hand']:.2f} s: {q['ratio_median']:.2f}x "
                      f"(CPU {q['cpu_ratio_median']:.2f}x; without the latency runs "
                      f"{q['ratio_without_timing_protocol_median']:.2f}x; vs the same "
                      f"measurements by hand {q['ratio_vs_by_hand_measured_median']:.2f}x; load "
                      f"{q['load_average_before_each_round']})")
        if args.only in (None, "app"):
            app = app_side_by_side(scratch, args.rounds)
        if app:
            print(f"app cold start {app['cold_start_ratio']:.2f}x (CPU "
                  f"{app['cold_start_cpu_ratio']:.2f}x), idle RSS "
                  f"{app['idle_rss_ratio']:.2f}x of a bare Gradio app: {app['median']}; "
                  f"load {app['load_average_before_each_round']}")
    write_result(f"latency_to_result{'_' + args.only if args.only else ''}",
                 {"quantize": quant, "app": app, "rounds": args.rounds})


if __name__ == "__main__":
    main()
