"""Peak memory of loading and running a saved model, measured in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def measure_memory_subprocess(paths: list[Path], *, batch_size: int = 64,
                              timeout: float = 120.0) -> dict[str, float | None]:
    """Peak RSS added by loading each model file and running one batch (MB), in parallel."""
    procs = {
        str(p): subprocess.Popen(
            [sys.executable, "-m", "core.measure._memory", str(p), str(batch_size)],
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


def _main(path: str, batch_size: int) -> None:
    import resource

    import onnx  # noqa: F401  (imported before the baseline reading: libraries are not
    import onnxruntime  # noqa: F401  part of the model's memory)
    import psutil
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import core.models  # noqa: F401
    from core.artifacts import load_model
    from core.measure._predictor import as_predictor

    before = psutil.Process().memory_info().rss
    loaded = load_model(path)
    pred = as_predictor(loaded.model)
    x = np.zeros((batch_size, *loaded.input_shape), dtype=np.float32)
    with pred.pinned_threads():
        for _ in range(3):
            pred(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"peak_mb": max(peak - before, 0) / 2**20}))


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]))
