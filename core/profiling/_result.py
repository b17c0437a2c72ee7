"""The result of a layer-wise profile: per-layer figures, the total, and the bottlenecks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from core.errors import check_range


@dataclass(frozen=True)
class LayerProfile:
    """One layer (torch leaf module or ONNX Runtime node) of a profile."""

    name: str
    kind: str  # module class or ONNX op type
    time_ms: float  # median over the profiled runs
    share: float  # time_ms / total_ms
    params: int | None  # None where the runtime does not say (ONNX nodes)
    flops: int | None  # None where the counter cannot see the layer (ONNX nodes)
    output_mb: float
    params_mb: float

    @property
    def macs(self) -> int | None:
        return None if self.flops is None else self.flops // 2

    def to_dict(self) -> dict[str, Any]:
        """The seed's keys (time_ms, percentage, memory_mb, flops) and the studio's."""
        return {**asdict(self), "macs": self.macs, "percentage": 100.0 * self.share,
                "memory_mb": self.output_mb + self.params_mb}


@dataclass(frozen=True)
class Profile:
    """Per-layer time, share, params, FLOPs and memory of one forward pass, plus the check.

    Each layer's ``time_ms`` is its median over the profiled runs; ``layer_sum_ms`` their sum;
    ``total_ms`` = ``layer_sum_ms`` + the median time spent between layers in the same runs,
    so shares add up to ``coverage``. ``coverage`` is the median over runs of (sum of the
    layers / whole forward), both timed in the same run (a stall of the machine falls in
    both); the check holds when it is within ``tolerance`` of 1. ``measured_total_ms`` is
    the median whole forward of the profiled runs; ``plain_total_ms`` the whole-model
    latency without profiling, by ``core.measure``'s interleaved protocol.
    """

    backend: str  # "torch" or "onnxruntime"
    batch_size: int
    threads: int
    runs: int
    layers: tuple[LayerProfile, ...]
    total_ms: float
    layer_sum_ms: float
    coverage: float
    measured_total_ms: float
    plain_total_ms: float | None
    tolerance: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def within_tolerance(self) -> bool:
        return abs(1.0 - self.coverage) <= self.tolerance

    def find_bottlenecks(self, threshold: float = 0.05) -> list[LayerProfile]:
        """Layers taking at least ``threshold`` of the time, slowest first."""
        check_range("threshold", threshold, low=0.0, high=1.0, low_inclusive=False)
        hits = [lay for lay in self.layers if lay.share >= threshold]
        return sorted(hits, key=lambda lay: lay.time_ms, reverse=True)

    # The seed iterates ``report.items()`` as {layer name: metrics dict}.
    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return ((lay.name, lay.to_dict()) for lay in self.layers)

    def __getitem__(self, name: str) -> dict[str, Any]:
        for lay in self.layers:
            if lay.name == name:
                return lay.to_dict()
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "batch_size": self.batch_size, "threads": self.threads,
            "runs": self.runs, "total_ms": self.total_ms, "layer_sum_ms": self.layer_sum_ms,
            "measured_total_ms": self.measured_total_ms,
            "plain_total_ms": self.plain_total_ms, "coverage": self.coverage,
            "tolerance": self.tolerance, "within_tolerance": self.within_tolerance,
            "layers": [lay.to_dict() for lay in self.layers], "notes": list(self.notes),
        }

    def table(self, limit: int = 20) -> str:
        """A plain-text table of the slowest layers."""
        rows = sorted(self.layers, key=lambda lay: lay.time_ms, reverse=True)[:limit]
        lines = [f"{'layer':<32} {'kind':<18} {'ms':>9} {'%':>6} {'params':>9} {'MFLOPs':>9}"]
        for lay in rows:
            mf = "-" if lay.flops is None else f"{lay.flops / 1e6:.3f}"
            params = "-" if lay.params is None else str(lay.params)
            lines.append(f"{lay.name[:32]:<32} {lay.kind[:18]:<18} {lay.time_ms:9.4f} "
                         f"{100 * lay.share:6.1f} {params:>9} {mf:>9}")
        verdict = "ok" if self.within_tolerance else "NOT within"
        lines.append(f"layers {self.layer_sum_ms:.4f} ms of {self.total_ms:.4f} ms per forward;"
                     f" layers/forward per run {100 * self.coverage:.1f} % (tolerance "
                     f"±{100 * self.tolerance:.0f} %: {verdict})")
        return "\n".join(lines)


def aggregate(per_run: Any, totals: Any) -> tuple[Any, float, float, float, float]:
    """(per-layer medians, layer sum, total, coverage, measured total) from the run matrix.

    ``per_run`` is runs × layers (ms), ``totals`` the whole forward of each run (ms).
    """
    import numpy as np

    mat, tot = np.asarray(per_run, dtype=float), np.asarray(totals, dtype=float)
    times = np.median(mat, axis=0)
    sums = mat.sum(axis=1)
    between = float(np.median(np.maximum(tot - sums, 0.0)))
    layer_sum = float(times.sum())
    coverage = float(np.median(sums / np.maximum(tot, 1e-12)))
    return times, layer_sum, layer_sum + between, coverage, float(np.median(tot))
