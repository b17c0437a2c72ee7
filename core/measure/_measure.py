"""The measurement protocol: the same figures for every variant, timed side by side."""

from __future__ import annotations

import io
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from core.artifacts._onnx import shared_onnx_reads
from core.measure._accuracy import metrics_from_logits
from core.measure._counting import onnx_macs, onnx_param_counts, torch_macs, torch_param_counts
from core.measure._efficiency import precision_of, target_extra
from core.measure._latency import interleaved_latency
from core.measure._memory import MemoryProbe
from core.measure._predictor import Predictor, as_predictor, predict_many
from core.measure._reuse import measured_under, parent_figures
from core.measure._target import resolve_target, time_at_other_threads, with_threads
from core.measure._verdict import noise_band


@dataclass(frozen=True)
class Measurement:
    """What the studio reports for one variant (schema in DESIGN.md)."""

    accuracy: float
    f1_macro: float
    size_bytes: int
    params: int
    nonzero_params: int
    macs: int | None
    latency_ms: dict[str, dict[str, float]]
    throughput_per_s: float | None
    peak_memory_mb: float | None
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    # how throughput_per_s was derived (not timed separately): rows ÷ p50 at one batch size
    throughput_basis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Measurement":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})

    def p50(self, batch_size: int) -> float | None:
        entry = self.latency_ms.get(str(batch_size))
        return entry["p50"] if entry else None


def serialized_size(model: Any) -> int:
    """Bytes of a model's weights serialized in memory (when no artifact file is given)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return 0
    try:
        from safetensors.torch import save

        return len(save({k: v.contiguous() for k, v in model.state_dict().items()}))
    except Exception:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        return buf.tell()


def _static_figures(model: Any, files: Sequence[Path], example: np.ndarray) -> dict[str, Any]:
    torch = sys.modules.get("torch")  # no torch module exists unless torch is imported

    onnx_file = next((Path(f) for f in files if str(f).endswith(".onnx")), None)
    if isinstance(model, Predictor):
        model = model.model
    if torch is not None and isinstance(model, torch.nn.Module):
        params, nonzero = torch_param_counts(model)
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        macs = torch_macs(model, torch.from_numpy(example).to(dtype))
    elif onnx_file is not None:
        params, nonzero = onnx_param_counts(onnx_file)
        macs = None
    else:
        params = nonzero = 0
        macs = None
    if onnx_file is not None and (macs is None or params == 0):
        macs = macs if macs is not None else onnx_macs(onnx_file)
        if params == 0:
            params, nonzero = onnx_param_counts(onnx_file)
    size = sum(Path(f).stat().st_size for f in files) if files else serialized_size(model)
    return {"params": params, "nonzero_params": nonzero, "macs": macs, "size_bytes": size}


def _in_process_peak_mb(pred: Predictor, xb: np.ndarray) -> float:
    """Peak RSS growth while running one batch, sampled by a thread (no file to load)."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    with pred.pinned_threads():
        pred(xb)
    done.set()
    t.join()
    return max(peak[0] - base, 0) / 2**20


@shared_onnx_reads()  # one parse per ONNX file for counts, MACs, precision
def measure_many(
    models: Mapping[str, Any],
    data: Any,
    *,
    files: Mapping[str, Sequence[str | Path]] | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    threads: Any = None,
    latency_budget_ms: float | None = None,
    budget_s: float = 0.4,
    memory: bool = True,
    callbacks: Any = None,
    stop_when_stable: bool = True,
    reuse_parents: Sequence[str] = (),
) -> dict[str, Measurement]:
    """Measure several variants under one protocol in one run; latency is interleaved.

    ``models`` maps a name to a torch module, an ORT session or an ``.onnx`` path;
    ``files`` maps the same name to the artifact file(s) whose bytes are its size (and
    from which its peak memory is measured in a fresh process).
    ``batch_sizes``, ``threads`` (a count, ``"all"`` or several, e.g. ``(1, "all")``) and
    ``latency_budget_ms`` are the deployment target (``core.measure.Target``): the first
    thread count is timed as ``latency_ms``, the others under ``extra["latency_by_threads"]``;
    ``extra["efficiency"]`` holds the achieved useful GMAC/s and its share of this CPU's
    measured peak. Options left out come from the active target (``using_target``), else
    batch sizes (1, 64) at 1 thread. ``budget_s`` is the most each variant is timed per
    batch size; with ``stop_when_stable`` a batch size ends sooner once two independent
    halves of the rounds give the same p50 within half the verdict's noise band.
    ``reuse_parents`` names variants whose accuracy, F1, counts and peak memory may come from
    the report of the run folder their files live in, where it proves the same measurement
    (``core.measure._reuse``; said in ``extra["reused_from_parent"]``); latency is always
    measured here. Every measurement records ``extra["measured_under"]`` for that proof, and
    ``extra["timed_with"]``: the runtime timed, "onnxruntime" or "torch".
    """
    target = resolve_target(batch_sizes=batch_sizes, threads=threads,
                            latency_budget_ms=latency_budget_ms)
    batch_sizes, threads = target.batch_sizes, target.thread_counts[0]
    files = {k: [Path(f) for f in v] for k, v in (files or {}).items()}
    X, y = data.split("test")
    check = callbacks.check if callbacks is not None else None
    preds = {name: as_predictor(with_threads(m, threads), threads=threads)
             for name, m in models.items()}
    common = measured_under(X, y, batch_sizes=batch_sizes, threads=threads)
    under = {name: {**common, "output_name": getattr(p, "output_name", None)}
             for name, p in preds.items()}
    reused = {name: parent_figures(files.get(name, []), under[name]) for name in reuse_parents
              if name in preds} if memory else {}
    reused = {k: v for k, v in reused.items() if v is not None}
    loadable = {name: _memory_file(fs) for name, fs in files.items()
                if name in preds and name not in reused}
    loadable = {k: v for k, v in loadable.items() if v is not None} if memory else {}
    # fresh processes, started now: their start-up overlaps the accuracy pass (not timed)
    probe = MemoryProbe(list(loadable.values()), batch_size=max(batch_sizes))
    out = _figures(preds, models, files, (X, y), reused, callbacks)
    peaks: dict[str, float | None] = {}
    if memory:
        by_path = probe.peaks_mb()  # every probe ends before the timing starts
        peaks = {name: by_path.get(str(path)) for name, path in loadable.items()}
        peaks.update({name: r["figures"]["peak_memory_mb"] for name, r in reused.items()})
        for name, pred in preds.items():  # no file a fresh process could load
            if name not in peaks:
                peaks[name] = _in_process_peak_mb(pred, np.repeat(X[:1], max(batch_sizes), 0))
    if callbacks is not None:
        callbacks.progress(len(preds) / (len(preds) + 1), "Timing (interleaved)")
    fixed = {p.fixed_batch for p in preds.values() if getattr(p, "fixed_batch", None)}
    sizes = tuple(sorted(set(batch_sizes) | fixed))
    stable = noise_band() / 2 if stop_when_stable else None
    lat = interleaved_latency(preds, X, batch_sizes=sizes, budget_s=budget_s, check=check,
                              stable_within=stable)
    others = time_at_other_threads(models, X, target, sizes=sizes, budget_s=budget_s,
                                   check=check, stable_within=stable)
    result = {}
    for name in preds:
        big = max(lat[name], key=int)  # the largest batch size this variant accepts
        p50 = lat[name][big]["p50"]
        extra = target_extra(target, lat[name], others[name], out[name]["macs"],
                             precision_of(models[name], files.get(name, [])))
        extra["measured_under"] = under[name]
        extra["timed_with"] = "onnxruntime" if preds[name].kind == "onnx" else "torch"
        if name in reused:
            extra["reused_from_parent"] = {"run": reused[name]["run"],
                                           "figures": sorted(reused[name]["figures"])}
        result[name] = Measurement(
            latency_ms=lat[name], throughput_per_s=int(big) * 1000.0 / p50,
            throughput_basis=f"derived: {big} rows ÷ p50 latency at batch {big}",
            peak_memory_mb=peaks.get(name), threads=threads, **out[name], extra=extra)
    return result


def _figures(preds: Mapping[str, Predictor], models: Mapping[str, Any],
             files: Mapping[str, list[Path]], test: tuple[np.ndarray, np.ndarray],
             reused: Mapping[str, Any], callbacks: Any) -> dict[str, dict[str, Any]]:
    """Accuracy, macro F1, size, parameters and MACs of each variant (a parent's where
    ``reused`` proves them the same measurement; the size is always read from the files)."""
    X, y = test
    out: dict[str, dict[str, Any]] = {}
    for name in reused:
        known = reused[name]["figures"]
        out[name] = {k: known[k] for k in ("accuracy", "f1_macro", "params",
                                             "nonzero_params", "macs")}
        out[name]["size_bytes"] = sum(f.stat().st_size for f in files[name])
    scored = [name for name in preds if name not in reused]
    if callbacks is not None and scored:
        callbacks.progress(0.0, f"Measuring accuracy of {', '.join(scored)}")
    for name, logits in zip(scored, predict_many([preds[n] for n in scored], X)):
        metrics = metrics_from_logits(logits, y)
        out[name] = {"accuracy": metrics.accuracy, "f1_macro": metrics.f1_macro,
                     **_static_figures(models[name], files.get(name, []), X[:1])}
    return {name: out[name] for name in preds}


def _memory_file(paths: Sequence[Path]) -> Path | None:
    """The file (or run folder) from which a fresh process can load the model."""
    for p in paths:
        if p.name in ("model.safetensors", "model.json"):
            return p.parent
    for p in paths:
        if p.suffix in (".onnx", ".pt", ".pt2"):
            return p
    return None


def measure(model: Any, data: Any, *, files: Sequence[str | Path] = (), **kwargs: Any
            ) -> Measurement:
    """Measure one variant (see ``measure_many`` for the options)."""
    return measure_many({"model": model}, data, files={"model": list(files)}, **kwargs)["model"]
