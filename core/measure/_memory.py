"""Peak memory of loading and running a saved model, measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


class MemoryProbe:
    """Probes of model files started now, each in a fresh process; ``result()`` waits.

    Start it before work that is not timed (accuracy) so that the processes' start-up
    overlaps that work, and collect the result before any timing starts.
    """

    def __init__(self, paths: list[Path], *, batch_size: int = 64,
                 timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.procs = {
            str(p): subprocess.Popen(
                # run as a script: ``-m`` would import the core.measure package first
                [sys.executable, str(Path(__file__).resolve()), str(Path(p).resolve()),
                 str(batch_size), *(["--trust-model"] if _trusted(Path(p)) else [])],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                cwd=str(Path(__file__).resolve().parents[2]),
            )
            for p in paths
        }

    def result(self) -> dict[str, dict[str, Any] | None]:
        """Each model's probe result (``peak_mb``, ``imported``); None where it failed."""
        out: dict[str, dict[str, Any] | None] = {}
        for key, proc in self.procs.items():
            try:
                stdout, _ = proc.communicate(timeout=self.timeout)
                out[key] = json.loads(stdout.strip().splitlines()[-1])
            except Exception:
                proc.kill()
                proc.wait()
                out[key] = None
        return out

    def peaks_mb(self) -> dict[str, float | None]:
        """Peak RSS (MB) added by loading each model file and running one batch."""
        return {k: float(v["peak_mb"]) if v else None for k, v in self.result().items()}


def probe_memory(paths: list[Path], *, batch_size: int = 64, timeout: float = 120.0
                 ) -> dict[str, dict[str, Any] | None]:
    """Each model's probe result (``peak_mb``, ``imported``), fresh processes in parallel."""
    return MemoryProbe(paths, batch_size=batch_size, timeout=timeout).result()


def measure_memory_subprocess(paths: list[Path], *, batch_size: int = 64,
                              timeout: float = 120.0) -> dict[str, float | None]:
    """Peak RSS added by loading each model file and running one batch (MB), in parallel.

    The fresh process trusts a TorchScript/.pt2 file only where this one does (the opt-in,
    or a file the studio made itself).
    """
    return MemoryProbe(paths, batch_size=batch_size, timeout=timeout).peaks_mb()


def _trusted(path: Path) -> bool:
    from core.artifacts._trust import is_studio_made, model_code_trusted

    return model_code_trusted() or (path.suffix in {".pt", ".pt2"} and is_studio_made(path))


# Heavy libraries the probe reports as imported (a test checks an ONNX file needs no torch).
_HEAVY = ("torch", "onnx", "onnxruntime", "safetensors", "sklearn", "scipy")


def _main(path: str, batch_size: int, *, trust_model: bool = False) -> None:
    """Print ``{"peak_mb": ..., "imported": [...]}``: the peak RSS the model adds.

    An ONNX file needs only ONNX Runtime and numpy here (no torch, onnx or studio loaders:
    importing them cost seconds per probe); other formats go through ``core.artifacts``.
    """
    import psutil

    onnx_input = _onnx_input(path) if path.endswith(".onnx") else None
    if onnx_input is None:
        import onnx  # noqa: F401  (imported before the baseline reading: libraries are not
        import onnxruntime  # noqa: F401  part of the model's memory)
        import safetensors.torch  # noqa: F401
        import torch  # noqa: F401

        import core.models  # noqa: F401
    reset = _reset_peak()  # the imports' own peak must not hide the model's
    before = psutil.Process().memory_info().rss
    if onnx_input is not None:
        _run_onnx(path, batch_size, onnx_input)
    else:
        _run_loaded(path, batch_size, trust_model=trust_model)
    peak = _peak_rss() if reset else _max_rss()
    print(json.dumps({"peak_mb": max(peak - before, 0) / 2**20,
                      "imported": [m for m in _HEAVY if m in sys.modules]}))


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
    _main(sys.argv[1], int(sys.argv[2]), trust_model="--trust-model" in sys.argv[3:])
