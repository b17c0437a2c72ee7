"""Exports of a comparison: self-contained HTML (plotly.js inline), Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["EXPORT_FILES", "to_csv", "to_html", "to_markdown", "write_exports"]

EXPORT_FILES = {"html": "report.html", "markdown": "report.md", "csv": "comparison.csv",
                "json": "report.json"}


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    if key == "size_bytes":
        return f"{value / 1024:,.1f} KB"
    if key in ("params", "nonzero_params", "macs") and isinstance(value, (int, float)):
        return f"{int(value):,}"
    if key in ("speedup_b1", "speedup_b64", "size_reduction"):
        return f"{value:.2f}×"
    if key.startswith("peak_share_b"):
        return f"{value * 100:.0f} %"
    if key == "accuracy_delta":
        return f"{value * 100:+.2f} pt"
    if key in ("accuracy", "f1_macro"):
        return f"{value:.4f}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _env_lines(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = ("cpu", "isa", "cores", "threads", "memory_gb", "cuda", "platform", "python",
            "torch", "onnxruntime", "onnx")
    out = []
    for k in keys:
        v = env.get(k)
        out.append((k, ", ".join(v) if isinstance(v, list) else str(v)))
    return out


def _protocol(report: Mapping[str, Any]) -> str:
    threads = (report.get("environment") or {}).get("threads")
    return (f"All variants were re-measured in one run under one protocol: latency timed "
            f"interleaved (A B A B …) with {threads} thread(s), p50/p95 at batch 1 and 64; "
            f"deltas are to the baseline `{report.get('baseline_id')}`; size is the artifact "
            "on disk. The Pareto front minimises size and batch-64 latency and maximises "
            "accuracy.")


def to_markdown(report: Mapping[str, Any]) -> str:
    from core.compare._compare import COLUMNS

    cols = [(k, h) for k, h in COLUMNS if k not in ("parent",)]
    lines = [f"# {report.get('title', 'Comparison')}", "",
             f"Created {report.get('created_at')} by Optimization Studio on data "
             f"`{(report.get('data') or {}).get('source')}`.", "", _protocol(report), "",
             "| " + " | ".join(h for _, h in cols) + " |",
             "|" + "---|" * len(cols)]
    for r in report["rows"]:
        lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k, _ in cols) + " |")
    lines += ["", "## Environment", ""]
    lines += [f"- **{k}**: {v}" for k, v in _env_lines(report.get("environment") or {})]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def to_csv(report: Mapping[str, Any]) -> str:
    """The rows as CSV; the environment manifest on leading ``#`` comment lines."""
    from core.compare._compare import COLUMNS

    buf = io.StringIO()
    for k, v in _env_lines(report.get("environment") or {}):
        buf.write(f"# {k}: {v}\n")
    buf.write(f"# baseline: {report.get('baseline_id')}\n")
    writer = csv.writer(buf)
    writer.writerow([k for k, _ in COLUMNS])
    for r in report["rows"]:
        writer.writerow(["" if r.get(k) is None else r.get(k) for k, _ in COLUMNS])
    return buf.getvalue()


def to_html(report: Mapping[str, Any], figures: Mapping[str, Any] | None = None) -> str:
    """One self-contained HTML page: plotly.js is embedded inline, so it works offline."""
    from core.compare._charts import all_figures
    from core.compare._compare import COLUMNS

    figures = figures if figures is not None else all_figures(report["rows"])
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for _, h in COLUMNS)
    body = "".join(
        "<tr" + (' class="pareto"' if r.get("pareto") else "") + ">"
        + "".join(f"<td>{esc(_fmt(k, r.get(k)))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in report["rows"])
    env = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                  for k, v in _env_lines(report.get("environment") or {}))
    charts = []
    for i, fig in enumerate(figures.values()):
        charts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                  config={"displaylogo": False, "responsive": True}))
    warnings = "".join(f"<li>{esc(w)}</li>" for w in report.get("warnings") or [])
    title = esc(str(report.get("title", "Comparison")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}
th{{background:#f3f3f3}} tr.pareto td{{background:#fff1f1}}
</style></head><body>
<h1>{title}</h1>
<p>Created {esc(str(report.get("created_at")))} by Optimization Studio on data
<code>{esc(str((report.get("data") or {}).get("source")))}</code>.</p>
<p>{esc(_protocol(report))}</p>
<h2>Variants</h2><table><tr>{head}</tr>{body}</table>
{"<h2>Warnings</h2><ul>" + warnings + "</ul>" if warnings else ""}
<h2>Charts</h2>
{"".join(charts)}
<h2>Environment</h2><table>{env}</table>
<script type="application/json" id="report-data">{esc(json.dumps(report["rows"]))}</script>
</body></html>
"""


def write_exports(report: Mapping[str, Any], folder: str | Path,
                  formats: Sequence[str] = ("html", "markdown", "csv")) -> dict[str, Path]:
    """Write the chosen exports into ``folder`` (report.json is written by the caller)."""
    folder = Path(folder)
    out = {}
    writers = {"html": to_html, "markdown": to_markdown, "csv": to_csv}
    for fmt in formats:
        path = folder / EXPORT_FILES[fmt]
        path.write_text(writers[fmt](report), encoding="utf-8")
        out[fmt] = path
    out["json"] = folder / EXPORT_FILES["json"]
    return out
