"""Layer-wise profile of a torch module: forward hooks time every leaf module."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from core.measure import torch_threads
from core.profiling._result import LayerProfile, Profile, aggregate


def _leaves(model: Any) -> list[tuple[str, Any]]:
    """Modules without children (the layers that do the work), by qualified name."""
    return [(name, mod) for name, mod in model.named_modules()
            if name and not any(True for _ in mod.children())]


def _layer_flops(model: Any, x: Any) -> dict[str, int]:
    """FLOPs per leaf module from torch's own counter (keys without the root class name)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode():
            model(x)
    except Exception:  # a module the counter cannot follow: FLOPs stay unknown
        return {}
    root = type(model).__name__ + "."
    return {k[len(root):]: int(sum(v.values())) for k, v in counter.get_flop_counts().items()
            if k.startswith(root)}


class _Timer:
    """Forward pre/post hooks that add each leaf module's elapsed time to the current run."""

    def __init__(self, leaves: list[tuple[str, Any]], sync: Any) -> None:
        self.names = [n for n, _ in leaves]
        self.current = np.zeros(len(leaves))
        self.out_bytes = np.zeros(len(leaves))
        self.sync = sync
        self._start: dict[int, int] = {}
        self.handles = []
        for i, (_, mod) in enumerate(leaves):
            self.handles.append(mod.register_forward_pre_hook(self._pre(i)))
            self.handles.append(mod.register_forward_hook(self._post(i)))

    def _pre(self, i: int):
        def hook(_mod: Any, _args: Any) -> None:
            self.sync()
            self._start[i] = time.perf_counter_ns()
        return hook

    def _post(self, i: int):
        def hook(_mod: Any, _args: Any, out: Any) -> None:
            self.sync()
            self.current[i] += (time.perf_counter_ns() - self._start.pop(i)) / 1e6
            if hasattr(out, "element_size"):
                self.out_bytes[i] = out.numel() * out.element_size()
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def profile_torch(model: Any, x: Any, *, runs: int, warmup: int, threads: int,
                  tolerance: float, device: str = "cpu") -> Profile:
    """Time every leaf module over ``runs`` forwards (after ``warmup``); whole forward too."""
    import torch

    model.eval()
    leaves = _leaves(model)
    if not leaves:
        leaves = [("", model)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    timer = _Timer(leaves, sync)
    per_layer, totals = [], []
    try:
        with torch_threads(threads), torch.inference_mode():
            for i in range(warmup + runs):
                timer.current[:] = 0.0
                sync()
                t0 = time.perf_counter_ns()
                model(x)
                sync()
                if i >= warmup:
                    totals.append((time.perf_counter_ns() - t0) / 1e6)
                    per_layer.append(timer.current.copy())
    finally:
        timer.remove()
    flops = _layer_flops(model, x) if device == "cpu" else {}
    times, layer_sum, total, coverage, measured = aggregate(per_layer, totals)
    layers = tuple(
        LayerProfile(name=name or type(mod).__name__, kind=type(mod).__name__,
                     time_ms=float(times[i]), share=float(times[i]) / total,
                     params=sum(p.numel() for p in mod.parameters(recurse=False)),
                     flops=flops.get(name, 0) if flops else None,
                     output_mb=float(timer.out_bytes[i]) / 2**20,
                     params_mb=sum(p.numel() * p.element_size()
                                   for p in mod.parameters(recurse=False)) / 2**20)
        for i, (name, mod) in enumerate(leaves))
    notes = ("Time between layers (functional ops in forward(), Python, the hooks) is counted "
             "in the total but in no layer.",)
    return Profile(backend="torch", batch_size=int(x.shape[0]), threads=threads, runs=runs,
                   layers=layers, total_ms=total, layer_sum_ms=layer_sum, coverage=coverage,
                   measured_total_ms=measured, plain_total_ms=None,
                   tolerance=tolerance, notes=notes)
