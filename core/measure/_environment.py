"""The environment manifest: which CPU, instruction sets, threads and library versions.

CPU features come from torch's own detection (``torch.cpu.get_capabilities()``, the cpuinfo
library that torch's kernels dispatch on: cpuid on x86, the OS elsewhere), not from parsing
``/proc/cpuinfo``, which exists only on Linux. What cannot be read is reported as unknown,
never as absent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
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


def _capabilities() -> dict[str, Any]:
    """torch's detected CPU capabilities; {} when this torch cannot say."""
    return dict(_torch_cpu_facts()["capabilities"])


@functools.lru_cache(maxsize=1)
def _torch_cpu_facts() -> dict[str, Any]:
    """torch's CPU capabilities (the fields used here) and ATen CPU capability, cached.

    Importing torch takes seconds in a process that needs only ONNX Runtime (an ONNX file
    quantized from the CLI), so the facts are kept in the studio's cache folder under a key
    read without torch: this CPU's identity in /proc/cpuinfo, torch's version and
    ATEN_CPU_CAPABILITY. Where there is no such key (no /proc/cpuinfo), torch is asked.
    """
    key = _facts_key()
    found = _read_facts(key) if key else None
    if found is not None:
        return found
    facts = {"capabilities": _ask_torch_capabilities(), "cpu_capability": _ask_torch_capability()}
    if key and facts["capabilities"]:
        _write_facts(key, facts)
    return facts


def _ask_torch_capabilities() -> dict[str, Any]:
    try:
        import torch

        caps = dict(torch.cpu.get_capabilities())
    except (ImportError, AttributeError, RuntimeError):  # torch < 2.10 has no get_capabilities
        return {}
    used = {"architecture", "cpu_name", *(key for key, _ in _ISA_NAMES)}
    return {k: v for k, v in caps.items() if k in used}


_FACTS_SCHEMA = "optimization-studio/cpu-facts/v1"
_CPU_IDENTITY = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags",
                 "Features", "CPU implementer", "CPU architecture", "CPU variant", "CPU part")


def _facts_key() -> str | None:
    """A hash of this CPU's identity and flags (first processor), torch's version and
    ATEN_CPU_CAPABILITY; None where /proc/cpuinfo cannot be read."""
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return None
    ident = [line.strip() for line in first.splitlines()
             if line.split(":")[0].strip() in _CPU_IDENTITY]
    if not ident:
        return None
    text = json.dumps([platform.machine(), _version("torch"),
                       os.environ.get("ATEN_CPU_CAPABILITY", ""), *ident])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _facts_file(key: str) -> Path:
    from core.measure._peak import cache_dir

    return cache_dir() / f"cpu-facts-{key}.json"


def _read_facts(key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_facts_file(key).read_text())
    except (OSError, ValueError):
        return None
    if data.get("schema") != _FACTS_SCHEMA or not isinstance(data.get("capabilities"), dict):
        return None
    return {"capabilities": data["capabilities"], "cpu_capability": data.get("cpu_capability")}


def _write_facts(key: str, facts: dict[str, Any]) -> None:
    path = _facts_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"schema": _FACTS_SCHEMA, **facts}, indent=2))
        os.replace(tmp, path)  # atomic: two processes writing at once both leave a whole file
    except OSError:
        pass  # a read-only home asks torch each time


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


@functools.lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_capability() -> str | None:
    return _torch_cpu_facts()["cpu_capability"]


def _ask_torch_capability() -> str | None:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError, RuntimeError):
        return None


def _cuda_available() -> bool:
    if "torch" not in sys.modules and (_version("torch") or "").endswith("+cpu"):
        return False  # a CPU-only torch build (its version says so): no import needed
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def environment_manifest(threads: int | None = None) -> dict[str, Any]:
    """CPU model, ISA flags, cores, memory, threads, CUDA and library versions."""
    import psutil

    model, isa = _cpuinfo()
    return {
        "cpu": model,
        "isa": list(isa) if isa_known() else None,
        "int8_dot_product": int8_dot_product(),
        "torch_cpu_capability": _torch_capability(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "cuda": _cuda_available(),
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
