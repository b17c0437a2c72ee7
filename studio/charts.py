"""Plotly figures shared by the tabs."""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curve(history: Sequence[dict[str, float]], title: str = "Training") -> go.Figure:
    """Train/val loss and val accuracy per epoch."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [h["epoch"] for h in history]
    fig.add_trace(go.Scatter(x=epochs, y=[h["train_loss"] for h in history], name="train loss"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.get("val_loss") for h in history], name="val loss"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.get("val_accuracy") for h in history],
                             name="val accuracy", line={"dash": "dot"}), secondary_y=True)
    fig.update_layout(title=title, xaxis_title="epoch", height=320,
                      margin={"l": 40, "r": 40, "t": 40, "b": 40})
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], secondary_y=True)
    return fig


def size_latency_scatter(rows: Sequence[dict[str, Any]], batch: str = "64") -> go.Figure:
    """Size on disk vs p50 latency, coloured by accuracy; one marker per variant."""
    rows = [r for r in rows if r.get(f"p50 b{batch} (ms)") is not None]
    accs = [r["accuracy"] for r in rows] or [0.0]
    low, high = min(accs), max(accs)
    fig = go.Figure(go.Scatter(
        x=[r[f"p50 b{batch} (ms)"] for r in rows],
        y=[r["size (KB)"] for r in rows],
        text=[r["variant"] for r in rows],
        mode="markers+text",
        textposition="top center",
        marker={"size": 14, "color": [r["accuracy"] for r in rows], "colorscale": "Viridis",
                "cmin": min(low, high - 0.01), "cmax": high, "showscale": True,
                "colorbar": {"title": "accuracy"}},
        hovertemplate="%{text}<br>p50 %{x:.3f} ms<br>%{y:.1f} KB<extra></extra>",
    ))
    fig.update_layout(title=f"Size vs latency (batch {batch}); lower-left is better",
                      xaxis_title=f"p50 latency at batch {batch} (ms)", yaxis_title="size (KB)",
                      height=420, margin={"l": 50, "r": 30, "t": 50, "b": 50})
    return fig


def variant_row(run_id: str, report: dict[str, Any], *, name: str | None = None
                ) -> dict[str, Any]:
    """One flat table row of a report's measured figures (``name``: the friendly one)."""
    from studio.names import friendly_name

    res = report.get("result") or {}
    lat = res.get("latency_ms") or {}
    ratios = report.get("ratios") or {}

    def p(bs: str, q: str) -> float | None:
        return round(lat[bs][q], 4) if bs in lat else None

    return {
        "name": (name or friendly_name(report)).strip(),
        "variant": run_id,
        "operation": report.get("operation"),
        "method": report.get("method") or "",
        "accuracy": round(res.get("accuracy", float("nan")), 4),
        "f1 macro": round(res.get("f1_macro", float("nan")), 4),
        "size (KB)": round(res.get("size_bytes", 0) / 1024, 1),
        "params": res.get("params"),
        "non-zero params": res.get("nonzero_params"),
        "MACs": res.get("macs"),
        "p50 b1 (ms)": p("1", "p50"),
        "p95 b1 (ms)": p("1", "p95"),
        "p50 b64 (ms)": p("64", "p50"),
        "p95 b64 (ms)": p("64", "p95"),
        "throughput (/s)": round(res.get("throughput_per_s") or 0.0, 1),
        "peak memory (MB)": _r(res.get("peak_memory_mb")),
        "speed-up b64 vs parent": _r(ratios.get("speedup_b64")),
        "accuracy Δ vs parent": _r(ratios.get("accuracy_delta")),
        "warnings": " | ".join(report.get("warnings", [])),
    }


def _r(value: float | None) -> float | None:
    return round(value, 3) if isinstance(value, (int, float)) else None
