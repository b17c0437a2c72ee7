"""The environment manifest: which CPU, instruction sets, threads and library versions."""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from typing import Any

ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve",
)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def cpu_isa() -> list[str]:
    """Instruction-set extensions that matter for inference speed (e.g. avx512_vnni)."""
    return list(_cpuinfo()[1])


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment_manifest(threads: int | None = None) -> dict[str, Any]:
    """CPU model, ISA flags, cores, memory, threads, CUDA and library versions."""
    import psutil

    model, isa = _cpuinfo()
    cuda = False
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:
        pass
    return {
        "cpu": model,
        "isa": list(isa),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "cuda": cuda,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: _version(dist) for name, dist in (
            ("torch", "torch"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx"),
            ("optuna", "optuna"), ("torch_pruning", "torch-pruning"), ("gradio", "gradio"))},
        "peaks_gmacs": _cached_peaks(),
    }


def _cached_peaks() -> dict[str, Any] | None:
    """This machine's measured FP32/INT8 GEMM peaks (GMAC/s at 1 thread and all cores) where
    already cached by core.measure._peak (nothing is measured here)."""
    from core.measure._peak import cached_peaks

    found = cached_peaks()
    return {k: found.get(k) for k in ("fp32", "int8", "threads_all", "measured_at")} \
        if found else None
