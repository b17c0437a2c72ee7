"""Peak memory of loading and running a saved model, each measured in a fresh process.

One probe process imports what the files need once and forks a fresh child per file
(Linux), so every model is still loaded into a process of its own, as a deployment would,
without paying the interpreter's start-up and the imports once per file. Elsewhere each file
gets a probe process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Forked children only where a child can map back its parent's library pages (Linux
# ``/proc/self/pagemap``); elsewhere one fresh process per file, as before.
_FORK = hasattr(os, "fork") and sys.platform.startswith("linux")


class MemoryProbe:
    """Probes of model files started now; ``result()`` waits.

    Start it before work that is not timed (accuracy) so that the probe's start-up
    overlaps that work, and collect the result before any timing starts.
    """

    def __init__(self, paths: list[Path], *, batch_size: int = 64,
                 timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.keys = [str(p) for p in paths]
        entries = [[str(Path(p).resolve()), _trusted(Path(p))] for p in paths]
        groups = [entries] if _FORK else [[e] for e in entries]
        self.procs = [
            subprocess.Popen(
                # run as a script: ``-m`` would import the core.measure package first
                [sys.executable, str(Path(__file__).resolve()), str(batch_size),
                 json.dumps(group)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                cwd=str(Path(__file__).resolve().parents[2]),
                start_new_session=hasattr(os, "killpg"),  # its children end with it
            )
            for group in groups if group
        ]

    def result(self) -> dict[str, dict[str, Any] | None]:
        """Each model's probe result (``peak_mb``, ``imported``); None where it failed."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.timeout
        for proc in self.procs:
            try:
                stdout, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _kill(proc)
                stdout, _ = proc.communicate()
            for line in (stdout or "").splitlines():
                try:
                    entry = json.loads(line)
                    found[entry.pop("path")] = entry
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a failed probe prints nothing usable: its figure stays None
        return {key: found.get(str(Path(key).resolve())) for key in self.keys}

    def peaks_mb(self) -> dict[str, float | None]:
        """Peak RSS (MB) added by loading each model file and running one batch."""
        return {k: float(v["peak_mb"]) if v else None for k, v in self.result().items()}


def _kill(proc: subprocess.Popen) -> None:
    """End a probe that ran out of time, and the children it forked."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, 9)
        else:
            proc.kill()
    except OSError:
        pass


def probe_memory(paths: list[Path], *, batch_size: int = 64, timeout: float = 120.0
                 ) -> dict[str, dict[str, Any] | None]:
    """Each model's probe result (``peak_mb``, ``imported``), each in a fresh process."""
    return MemoryProbe(paths, batch_size=batch_size, timeout=timeout).result()


def measure_memory_subprocess(paths: list[Path], *, batch_size: int = 64,
                              timeout: float = 120.0) -> dict[str, float | None]:
    """Peak RSS added by loading each model file and running one batch (MB).

    The fresh process trusts a TorchScript/.pt2 file only where this one does (the opt-in,
    or a file the studio made itself).
    """
    return MemoryProbe(paths, batch_size=batch_size, timeout=timeout).peaks_mb()


def _trusted(path: Path) -> bool:
    from core.artifacts._trust import is_studio_made, model_code_trusted

    return model_code_trusted() or (path.suffix in {".pt", ".pt2"} and is_studio_made(path))


# Heavy libraries the probe reports as imported (a test checks an ONNX file needs no torch).
_HEAVY = ("torch", "onnx", "onnxruntime", "safetensors", "sklearn", "scipy")


def _probe_all(entries: list[list[Any]], batch_size: int) -> None:
    """Probe each ``[path, trusted]`` in a fresh child forked from this process (ONNX files
    first, before anything beyond ONNX Runtime is imported here); print one line each."""
    import onnxruntime  # noqa: F401  (every probe imports it before its baseline reading)
    import psutil  # noqa: F401

    if not _FORK:
        for path, trusted in entries:
            _main(path, batch_size, trust_model=trusted)
        return
    onnx_first = sorted(entries, key=lambda e: not str(e[0]).endswith(".onnx"))
    children = []
    resident, loaders = None, False
    for path, trusted in onnx_first:
        if not path.endswith(".onnx") and not loaders:
            _import_loaders()  # once, here, for every non-ONNX child (ONNX ones are forked)
            resident, loaders = None, True
        if resident is None:
            resident = _resident_file_pages()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: one model, then exit without running the parent's cleanup
            code = 1
            try:
                _touch(resident)
                _main(path, batch_size, trust_model=trusted)
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


def _main(path: str, batch_size: int, *, trust_model: bool = False) -> None:
    """Print ``{"path": ..., "peak_mb": ..., "imported": [...]}``: the peak RSS the model adds.

    An ONNX file needs only ONNX Runtime and numpy here (no torch, onnx or studio loaders:
    importing them cost seconds per probe); other formats go through ``core.artifacts``.
    """
    import psutil

    onnx_input = _onnx_input(path) if path.endswith(".onnx") else None
    if onnx_input is None:
        _import_loaders()
    reset = _reset_peak()  # the imports' own peak must not hide the model's
    before = psutil.Process().memory_info().rss
    if onnx_input is not None:
        _run_onnx(path, batch_size, onnx_input)
    else:
        _run_loaded(path, batch_size, trust_model=trust_model)
    peak = _peak_rss() if reset else _max_rss()
    _say({"path": path, "peak_mb": max(peak - before, 0) / 2**20,
          "imported": [m for m in _HEAVY if m in sys.modules]})


def _say(entry: dict[str, Any]) -> None:
    """Print ``entry`` as one JSON line in one write: children forked side by side share
    stdout, and a ``print`` is two writes where stdout is unbuffered (PYTHONUNBUFFERED),
    so another child's line could land between them and spoil both. A pipe write of up to
    PIPE_BUF (4096) bytes is never interleaved."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(entry) + "\n").encode())


def _resident_file_pages() -> list[int]:
    """Addresses of the readable file-mapped pages resident in this process (``pagemap``).

    Linux copies no page table entries of a read-only file mapping (library code) into a
    forked child: the child faults those pages in again when it runs, and they would count
    as the model's memory. The child re-touches these pages first (hand-written: no library
    restores a parent's page tables), so it starts where a fresh process that imported the
    same libraries starts. Empty where ``/proc/self/pagemap`` cannot be read.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    # one small buffer, reused: large reads would leave freed heap that the child reuses
    # instead of growing, hiding part of the model's memory
    buf = bytearray(8 * 2048)
    found = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb",
                                                   buffering=0) as pagemap:
            for line in maps.read().splitlines():
                fields = line.split()
                if len(fields) < 6 or not fields[1].startswith("r") or \
                        not fields[5].startswith("/") or fields[5].startswith("/dev/"):
                    continue
                start, end = (int(x, 16) // page for x in fields[0].split("-"))
                pagemap.seek(start * 8)
                for first in range(start, end, 2048):
                    n = pagemap.readinto(memoryview(buf)[:8 * min(2048, end - first)]) // 8
                    flags = np.frombuffer(buf, dtype=np.uint64, count=n)
                    found.extend(((first + np.flatnonzero(flags >> np.uint64(63))) * page
                                  ).tolist())
    except (OSError, ValueError):
        return []
    return found


def _touch(addresses: list[int]) -> None:
    """Read one byte of each page (maps it into this process again)."""
    import ctypes

    for address in addresses:
        ctypes.string_at(address, 1)


def _import_loaders() -> None:
    """What the studio's loaders need, imported before the baseline reading (libraries are
    not part of the model's memory)."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import core.models  # noqa: F401


def _max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _onnx_input(path: str) -> tuple[str, list[int], Any] | None:
    """(name, shape without the batch, numpy dtype) of a one-input ONNX file whose only free
    dimension is the batch; None where the studio's loader must decide."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    if len(inputs) != 1 or not inputs[0].shape:
        return None
    dims = inputs[0].shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        return None
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(float16)": np.float16}.get(inputs[0].type)
    first = inputs[0].shape[0]
    return (inputs[0].name, [first if isinstance(first, int) and first > 0 else None, *dims],
            dtype) if dtype is not None else None


def _run_onnx(path: str, batch_size: int, spec: tuple[str, list[int], Any]) -> None:
    import onnxruntime as ort

    name, shape, dtype = spec
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = np.zeros((shape[0] or batch_size, *shape[1:]), dtype=dtype)
    for _ in range(3):
        sess.run(None, {name: x})


def _run_loaded(path: str, batch_size: int, *, trust_model: bool) -> None:
    from core.artifacts import load_model
    from core.measure._predictor import as_predictor

    loaded = load_model(path, trust_model=trust_model)
    pred = as_predictor(loaded.model)
    x = np.zeros((batch_size, *loaded.input_shape), dtype=np.float32)
    with pred.pinned_threads():
        for _ in range(3):
            pred(x)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _peak_rss() > 0
    except OSError:
        return False


def _peak_rss() -> int:
    """Peak resident set size since the last reset, in bytes (``VmHWM``; 0 if unknown)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the studio's root
    _probe_all(json.loads(sys.argv[2]), int(sys.argv[1]))
