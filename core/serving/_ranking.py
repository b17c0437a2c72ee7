"""Rank variants by a device's measured latency (figures an agent posted), with its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.errors import InvalidParameterError


def load_device(device: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A device record: as given (a mapping) or read from its JSON file."""
    if isinstance(device, Mapping):
        record = dict(device)
    else:
        path = Path(device)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InvalidParameterError("device", "a device record or its .json file",
                                        path.name) from None
    if not isinstance(record.get("figures"), dict) or "manifest" not in record:
        raise InvalidParameterError("device", "a record with 'manifest' and 'figures' "
                                    "(GET /api/devices)", sorted(record)[:8])
    return record


def device_ranking(device: Mapping[str, Any] | str | Path, variants: Sequence[str], *,
                   batch_size: int | None = None) -> dict[str, Any]:
    """Variants ordered by the device's p50 at ``batch_size`` (default: the smallest batch
    it measured); variants without figures on it are listed as ``missing``."""
    record = load_device(device)
    figures = record["figures"]
    measured = {bs for v in variants for bs in (figures.get(_run(v)) or {}).get(
        "latency_ms", {})}
    if batch_size is None:
        batch_size = min((int(b) for b in measured), default=1)
    key = str(batch_size)
    rows = []
    for v in variants:
        lat = (figures.get(_run(v)) or {}).get("latency_ms") or {}
        row: dict[str, Any] = {"variant": v}
        for bs, figs in sorted(lat.items(), key=lambda kv: int(kv[0])):
            row[f"device_p50_b{bs}"], row[f"device_p95_b{bs}"] = figs["p50"], figs["p95"]
        rows.append(row)
    ranked = sorted((r for r in rows if f"device_p50_b{key}" in r),
                    key=lambda r: r[f"device_p50_b{key}"])
    for i, r in enumerate(ranked, 1):
        r["device_rank"] = i
    return {"device_id": record.get("device_id"), "manifest": record["manifest"],
            "batch_size": batch_size, "ranking": [r["variant"] for r in ranked],
            "rows": rows, "missing": [r["variant"] for r in rows if "device_rank" not in r]}


def _run(variant: str) -> str:
    return variant.split("#", 1)[0]  # core.compare names a repeated run '<id>#2'


def ranking_markdown(section: Mapping[str, Any]) -> str:
    """The ranking as a Markdown table, the device's manifest above it."""
    m = section["manifest"]
    head = (f"**Device** {m.get('name', '?')}: {m.get('cpu', '?')} ({m.get('machine', '')}; "
            f"{', '.join(m.get('isa') or []) or 'ISA unknown'}), {m.get('platform', '')}, "
            f"ONNX Runtime {m.get('onnxruntime')}, {m.get('threads')} thread(s).")
    sizes = sorted({k.split("_b")[1] for r in section["rows"] for k in r
                    if k.startswith("device_p50_b")}, key=int)
    lines = [head, "", "| rank | variant | " + " | ".join(f"p50 / p95 b{b} (ms)" for b in sizes)
             + " |", "|---|---|" + "---|" * len(sizes)]
    order = {v: i for i, v in enumerate(section["ranking"])}
    for r in sorted(section["rows"], key=lambda r: order.get(r["variant"], 10**9)):
        cells = [f"{r[f'device_p50_b{b}']:.3f} / {r[f'device_p95_b{b}']:.3f}"
                 if f"device_p50_b{b}" in r else "—" for b in sizes]
        lines.append(f"| {r.get('device_rank', '—')} | {r['variant']} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)
