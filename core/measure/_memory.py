"""Peak memory of loading and running a saved model, measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def measure_memory_subprocess(paths: list[Path], *, batch_size: int = 64,
                              timeout: float = 120.0) -> dict[str, float | None]:
    """Peak RSS added by loading each model file and running one batch (MB), in parallel.

    The fresh process trusts a TorchScript/.pt2 file only where this one does (the opt-in,
    or a file the studio made itself).
    """
    procs = {
        str(p): subprocess.Popen(
            [sys.executable, "-m", "core.measure._memory", str(Path(p).resolve()),
             str(batch_size), *(["--trust-model"] if _trusted(Path(p)) else [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        for p in paths
    }
    out: dict[str, float | None] = {}
    for key, proc in procs.items():
        try:
            stdout, _ = proc.communicate(timeout=timeout)
            out[key] = float(json.loads(stdout.strip().splitlines()[-1])["peak_mb"])
        except Exception:
            proc.kill()
            out[key] = None
    return out


def _trusted(path: Path) -> bool:
    from core.artifacts._trust import is_studio_made, model_code_trusted

    return model_code_trusted() or (path.suffix in {".pt", ".pt2"} and is_studio_made(path))


def _main(path: str, batch_size: int, *, trust_model: bool = False) -> None:
    import resource

    import onnx  # noqa: F401  (imported before the baseline reading: libraries are not
    import onnxruntime  # noqa: F401  part of the model's memory)
    import psutil
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import core.models  # noqa: F401
    from core.artifacts import load_model
    from core.measure._predictor import as_predictor

    reset = _reset_peak()  # the imports' own peak must not hide the model's
    before = psutil.Process().memory_info().rss
    loaded = load_model(path, trust_model=trust_model)
    pred = as_predictor(loaded.model)
    x = np.zeros((batch_size, *loaded.input_shape), dtype=np.float32)
    with pred.pinned_threads():
        for _ in range(3):
            pred(x)
    peak = _peak_rss() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_mb": max(peak - before, 0) / 2**20}))


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
    _main(sys.argv[1], int(sys.argv[2]), trust_model="--trust-model" in sys.argv[3:])
