"""Re-measure variants side by side under one protocol and write the comparison report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.callbacks import Callbacks
from core.compare._pareto import pareto_front
from core.errors import DataError, InvalidParameterError

__all__ = ["COLUMNS", "compare", "comparison_rows", "measure_variants"]

# Row keys and their human headers, in table order.
COLUMNS: list[tuple[str, str]] = [
    ("variant", "variant"), ("operation", "operation"), ("method", "method"),
    ("parent", "parent"), ("size_bytes", "size (bytes)"), ("params", "params"),
    ("nonzero_params", "non-zero params"), ("macs", "MACs"),
    ("p50_b1", "p50 b1 (ms)"), ("p95_b1", "p95 b1 (ms)"),
    ("p50_b64", "p50 b64 (ms)"), ("p95_b64", "p95 b64 (ms)"),
    ("throughput_per_s", "throughput (/s, derived: largest batch ÷ its p50)"),
    ("peak_memory_mb", "peak memory (MB)"),
    ("gmacs_b1", "GMAC/s b1"), ("peak_share_b1", "share of peak b1"),
    ("gmacs_b64", "GMAC/s b64"), ("peak_share_b64", "share of peak b64"),
    ("accuracy", "accuracy"), ("f1_macro", "macro F1"),
    ("speedup_b1", "speed-up b1"), ("speedup_b64", "speed-up b64"),
    ("size_reduction", "size reduction"), ("accuracy_delta", "accuracy Δ"),
    ("pareto", "Pareto front"),
]
PARETO_OBJECTIVES = (("size_bytes", "min"), ("p50_b64", "min"), ("accuracy", "max"))


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}#{i}", i + 1
    taken.add(out)
    return out


def measure_variants(
    run_dirs: Sequence[str | Path],
    *,
    data: Any = None,
    callbacks: Callbacks | None = None,
    measure_options: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], Any]:
    """Open every run folder and measure all of them in ONE ``measure_many`` call.

    Returns ``(measurements by name, report by name, dataset)``; names are run ids.
    Every variant must have been made on the same data set (same source and split seed).
    ``models`` maps a run id to an in-memory model timed in place of the loaded one (e.g.
    the eager nn.Module a TorchScript baseline was saved from).
    """
    from core.measure import measure_many
    from core.runs import data_from_report, open_variant

    if not run_dirs:
        raise InvalidParameterError("variants", "at least one run folder", list(run_dirs))
    cb = Callbacks.ensure(callbacks)
    overrides = dict(models or {})
    models = {}
    files: dict[str, list[Path]] = {}
    reports: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    dataset = data
    first_spec: dict[str, Any] | None = None
    for i, run_dir in enumerate(run_dirs):
        cb.progress(0.05 * i / len(run_dirs), f"Opening {Path(run_dir).name}")
        from core.artifacts import read_report

        report = read_report(run_dir)
        spec = {k: (report.get("data") or {}).get(k) for k in ("source", "seed", "label_column")}
        if first_spec is None:
            first_spec = spec
            if dataset is None:
                dataset = data_from_report(report)
        elif data is None and spec != first_spec:
            raise DataError(
                f"'{Path(run_dir).name}' was made on {_data_words(spec, first_spec)}, but "
                f"'{Path(run_dirs[0]).name}' on {_data_words(first_spec, spec)}: variants are "
                "compared on one data set.")
        variant = open_variant(run_dir, data=dataset)
        name = _unique(variant.run_id, taken)
        models[name] = overrides.get(variant.run_id, variant.model)
        files[name] = variant.files()
        reports[name] = report
    opts = {"budget_s": 0.4, "memory": True, "threads": 1, **dict(measure_options or {})}
    sub = Callbacks(on_progress=lambda f, m: cb.progress(0.05 + 0.9 * f, m), cancel=cb.cancel)
    measured = measure_many(models, dataset, files=files, callbacks=sub, **opts)
    return measured, reports, dataset


def _data_words(spec: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    """A run's data in words, its file by base name only (never a server path)."""
    source = str(spec.get("source"))
    name = Path(source).name
    where = " (another folder)" if name == Path(str(other.get("source"))).name and \
        source != other.get("source") else ""
    return (f"data '{name}'{where} (seed {spec.get('seed')}, label column "
            f"'{spec.get('label_column')}')")


def comparison_rows(measured: Mapping[str, Any], reports: Mapping[str, Mapping[str, Any]],
                    baseline: str) -> list[dict[str, Any]]:
    """One flat row per variant with deltas to ``baseline`` and a Pareto flag."""
    base = measured[baseline]
    rows = []
    for name, m in measured.items():
        rep = reports.get(name, {})
        lat = m.latency_ms
        row = {
            "variant": name, "operation": rep.get("operation"), "method": rep.get("method"),
            "parent": rep.get("parent"), "size_bytes": m.size_bytes, "params": m.params,
            "nonzero_params": m.nonzero_params, "macs": m.macs,
            "p50_b1": lat.get("1", {}).get("p50"), "p95_b1": lat.get("1", {}).get("p95"),
            "p50_b64": lat.get("64", {}).get("p50"), "p95_b64": lat.get("64", {}).get("p95"),
            "throughput_per_s": m.throughput_per_s, "peak_memory_mb": m.peak_memory_mb,
            "accuracy": m.accuracy, "f1_macro": m.f1_macro,
            "speedup_b1": _ratio(base.p50(1), m.p50(1)),
            "speedup_b64": _ratio(base.p50(64), m.p50(64)),
            "size_reduction": _ratio(base.size_bytes, m.size_bytes),
            "accuracy_delta": m.accuracy - base.accuracy,
            "baseline": name == baseline,
        }
        row.update(_per_batch(m, base))
        rows.append(row)
    front = set(pareto_front(rows, PARETO_OBJECTIVES))
    for i, row in enumerate(rows):
        row["pareto"] = i in front
    return rows


def _per_batch(m: Any, base: Any) -> dict[str, Any]:
    """p50/p95/speed-up at every measured batch size (the target's), and the achieved useful
    GMAC/s with its share of this CPU's measured peak (FP32 or INT8, by the variant's ops)."""
    out: dict[str, Any] = {}
    eff = (m.extra or {}).get("efficiency") or {}
    for bs, lat in m.latency_ms.items():
        out[f"p50_b{bs}"], out[f"p95_b{bs}"] = lat.get("p50"), lat.get("p95")
        out[f"speedup_b{bs}"] = _ratio(base.p50(int(bs)), m.p50(int(bs)))
        fig = (eff.get("by_batch") or {}).get(bs) or {}
        out[f"gmacs_b{bs}"], out[f"peak_share_b{bs}"] = (fig.get("gmacs_per_s"),
                                                         fig.get("share_of_peak"))
    out["precision"] = eff.get("precision")
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A warning per variant and batch size not faster than the baseline (one verdict)."""
    from core.measure import FASTER, isa_text, speed_phrase, speed_verdict

    notes = []
    for r in rows:
        if r["baseline"]:
            continue
        for key, s in r.items():
            if key.startswith("speedup_b") and speed_verdict(s) not in (None, FASTER):
                notes.append(f"{r['variant']} is {speed_phrase(s, 'the baseline')} at batch "
                             f"{key.removeprefix('speedup_b')} on this CPU ({isa_text()}).")
    return notes


def compare(
    run_dirs: Sequence[str | Path],
    *,
    out_dir: str | Path,
    baseline: str | None = None,
    data: Any = None,
    callbacks: Callbacks | None = None,
    measure_options: Mapping[str, Any] | None = None,
    title: str = "Comparison",
    models: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    device: Any = None,
) -> Any:
    """Re-measure ``run_dirs`` side by side and write report.json, HTML, Markdown and CSV.

    ``baseline`` is the run id every delta is taken against (default: the first folder).
    ``device``: a device record (GET /api/devices) or its .json file; the report's
    ``device`` section ranks the variants by that device's measured latency.
    Returns a ``core.runs.RunResult`` whose report holds the rows and the Pareto front.
    """
    from core.artifacts import SCHEMA, staging, write_report
    from core.compare._export import write_exports
    from core.measure import environment_manifest
    from core.runs import RunResult

    cb = Callbacks.ensure(callbacks)
    measured, reports, dataset = measure_variants(run_dirs, data=data, callbacks=cb,
                                                  measure_options=measure_options,
                                                  models=models)
    names = list(measured)
    if baseline is None:
        baseline = names[0]
    if baseline not in measured:
        raise InvalidParameterError("baseline", f"one of the compared run ids {names}", baseline)
    rows = comparison_rows(measured, reports, baseline)
    threads = next(iter(measured.values())).threads
    report = {
        "schema": SCHEMA, "operation": "compare", "method": None,
        "config": {"variants": [str(p) for p in run_dirs], "baseline": baseline,
                   "measure_options": dict(measure_options or {})},
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "title": title, "baseline_id": baseline, "data": dataset.spec.to_dict(),
        "variants": {n: {"measurement": m.to_dict(), "report": _summary(reports[n])}
                     for n, m in measured.items()},
        "rows": rows, "pareto": [r["variant"] for r in rows if r["pareto"]],
        "pareto_objectives": [list(o) for o in PARETO_OBJECTIVES],
        "environment": environment_manifest(threads=threads),
        "warnings": _warnings(rows),
    }
    if device is not None:  # figures an agent measured on the target device
        from core.serving import device_ranking

        report["device"] = device_ranking(device, names)
    cb.progress(0.96, "Writing the report")
    with staging(out_dir, overwrite=overwrite, inputs=list(run_dirs)) as tmp:
        write_report(tmp, report)
        write_exports(report, tmp)
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparison keeps of a variant's own report (for lineage and context)."""
    return {k: report.get(k) for k in ("operation", "method", "config", "parent", "created_at",
                                       "ratios", "warnings", "seed")}
