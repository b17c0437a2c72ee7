"""The environment manifest: which CPU, instruction sets, threads and library versions.

CPU features come from torch's own detection (``torch.cpu.get_capabilities()``, the cpuinfo
library that torch's kernels dispatch on: cpuid on x86, the OS elsewhere), not from parsing
``/proc/cpuinfo``, which exists only on Linux. What cannot be read is reported as unknown,
never as absent.
"""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from typing import Any

# torch capability name -> the name written in reports (the Linux /proc/cpuinfo spelling,
# kept so that reports from before and after this change compare).
_ISA_NAMES = (
    ("sse4_2", "sse4_2"), ("avx", "avx"), ("avx2", "avx2"), ("fma3", "fma"),
    ("avx512_f", "avx512f"), ("avx512_bw", "avx512bw"), ("avx512_vnni", "avx512_vnni"),
    ("avx512_bf16", "avx512_bf16"), ("avx512_fp16", "avx512_fp16"), ("avx_vnni", "avx_vnni"),
    ("amx_tile", "amx_tile"), ("amx_int8", "amx_int8"), ("amx_bf16", "amx_bf16"),
    ("neon", "asimd"), ("dot", "asimddp"), ("i8mm", "i8mm"), ("sve", "sve"),
)
ISA_FLAGS = tuple(name for _, name in _ISA_NAMES)
# INT8 dot-product instructions, where INT8 kernels get most of their speed.
_INT8_DOT = {"x86": ("avx512_vnni", "avx_vnni", "amx_int8"), "arm": ("dot", "i8mm")}


@functools.lru_cache(maxsize=1)
def _capabilities() -> dict[str, Any]:
    """torch's detected CPU capabilities; {} when this torch cannot say."""
    try:
        import torch

        return dict(torch.cpu.get_capabilities())
    except (ImportError, AttributeError, RuntimeError):  # torch < 2.10 has no get_capabilities
        return {}


def _arch(caps: dict[str, Any]) -> str | None:
    arch = str(caps.get("architecture") or platform.machine()).lower()
    if arch in ("x86_64", "amd64", "x86", "i686"):
        return "x86"
    if arch in ("aarch64", "arm64"):
        return "arm"
    return None


def _model_name(caps: dict[str, Any]) -> str:
    return str(caps.get("cpu_name") or platform.processor() or platform.machine() or "unknown")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """(CPU model, ISA flags present); the flags are empty when unknown."""
    caps = _capabilities()
    return _model_name(caps), tuple(name for key, name in _ISA_NAMES if caps.get(key) is True)


def cpu_isa() -> list[str]:
    """Instruction-set extensions that matter for inference speed (e.g. avx512_vnni).

    Empty when they could not be read: check :func:`isa_known` before calling a flag absent.
    """
    return list(_cpuinfo()[1])


def isa_known() -> bool:
    """Whether this CPU's instruction sets could be read at all."""
    return bool(_capabilities()) and _arch(_capabilities()) is not None


def isa_text() -> str:
    """The ISA for a sentence: ``"avx2, fma"``, or ``"unknown instruction set"``."""
    return ", ".join(cpu_isa()) if isa_known() else "unknown instruction set"


def int8_dot_product() -> bool | None:
    """Whether the CPU has INT8 dot-product instructions (VNNI/AMX on x86, dot/i8mm on ARM).

    ``None`` when unknown (an older torch, another architecture), never ``False`` then.
    """
    caps = _capabilities()
    arch = _arch(caps)
    if not caps or arch is None:
        return None
    return any(caps.get(key) is True for key in _INT8_DOT[arch])


def int8_dot_text() -> str:
    """A clause for warnings: has / has no / unknown INT8 dot-product instructions."""
    has = int8_dot_product()
    if has is None:
        return "whether this CPU has INT8 dot-product instructions (VNNI/AMX) is unknown"
    return ("this CPU has INT8 dot-product instructions (VNNI/AMX)" if has else
            "this CPU has no INT8 dot-product instructions (VNNI/AMX)")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_capability() -> str | None:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError, RuntimeError):
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
        "isa": list(isa) if isa_known() else None,
        "int8_dot_product": int8_dot_product(),
        "torch_cpu_capability": _torch_capability(),
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
