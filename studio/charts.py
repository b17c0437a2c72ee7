"""Plotly figures shared by the tabs."""

from __future__ import annotations

import math
from typing import Any, Sequence

import plotly.graph_objects as go

TITLE_CHARS = 34  # what a 14 px title line holds in a phone-wide chart (390 px screen)


def fit_title(fig: Any, *, width: int = TITLE_CHARS) -> Any:
    """Wrap a chart's title to lines that fit a phone-wide chart: a hint after " — " or in
    brackets goes on a smaller line of its own; the top margin grows to hold the lines."""
    import re
    import textwrap

    text = fig.layout.title.text if fig is not None else None
    if not text or "<br>" in text:
        return fig
    main, hint = text, ""
    found = re.match(r"^(.*?)\s+(?:—\s+(.+)|(\(.+\)))$", text)
    if found:
        main, hint = found.group(1), found.group(2) or found.group(3)
    lines = textwrap.wrap(main, width)
    lines += [f"<span style='font-size:11px'>{line}</span>"
              for line in textwrap.wrap(hint, int(width * 1.25))]
    top = 16 + 18 * len(lines) + 12
    fig.update_layout(title={"text": "<br>".join(lines), "x": 0, "xanchor": "left",
                             "y": 1, "yref": "container", "yanchor": "top",
                             "pad": {"t": 10, "l": 8}, "font": {"size": 14}},
                      margin={"t": max(top, fig.layout.margin.t or 0)})
    return fig


def training_curve(history: Sequence[dict[str, float]], title: str = "Training") -> go.Figure:
    """Train/val loss and val accuracy per epoch."""
    from plotly.subplots import make_subplots  # loads plotly's figure classes: not at start-up

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [h["epoch"] for h in history]
    fig.add_trace(go.Scatter(x=epochs, y=[h["train_loss"] for h in history], name="train loss"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.get("val_loss") for h in history], name="val loss"))
    fig.add_trace(go.Scatter(x=epochs, y=[h.get("val_accuracy") for h in history],
                             name="val accuracy", line={"dash": "dot"}), secondary_y=True)
    fig.update_layout(title=title, xaxis_title="epoch", height=320,
                      margin={"l": 40, "r": 40, "t": 40, "b": 40})
    fig.update_xaxes(dtick=max(1, -(-len(epochs) // 10)), tick0=1)  # whole epochs only
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], secondary_y=True)
    return fit_title(fig)


def size_latency_scatter(rows: Sequence[dict[str, Any]], batch: str = "64",
                         pick: str | None = None) -> Any:
    """Size on disk vs p50 latency of table rows (``variant_row``), ``pick`` starred; None
    when empty."""
    return decision_scatter(rows, x=f"p50 b{batch} (ms)", y="size (KB)", pick=pick,
                            x_title=f"p50 latency, batch {batch} (ms)",
                            y_title="size on disk (KB)",
                            title=f"Size vs latency (batch {batch}) — lower-left is better")


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
        "throughput (/s, derived: largest batch ÷ its p50)":
            round(res.get("throughput_per_s") or 0.0, 1),
        "peak memory (MB)": _r(res.get("peak_memory_mb")),
        "speed-up b64 vs parent": _r(ratios.get("speedup_b64")),
        "accuracy Δ vs parent": _r(ratios.get("accuracy_delta")),
        "warnings": " | ".join(report.get("warnings", [])),
    }


def _r(value: float | None) -> float | None:
    return round(value, 3) if isinstance(value, (int, float)) else None


# --- charts to decide from: hover details, a 2-D Pareto step line, the pick marked ---------

FRONT_COLOR = "crimson"


def front_2d(points: Sequence[tuple[float, float]], *, y_higher: bool) -> list[int]:
    """Indices of the points no other point beats on both axes (x lower is better; y lower,
    or higher when ``y_higher``), ordered by x: a monotone staircase."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0],
                                                      -points[i][1] if y_higher else
                                                      points[i][1]))
    front, best = [], None
    for i in order:
        y = points[i][1]
        if best is None or (y > best if y_higher else y < best):
            front.append(i)
            best = y
    return front


def decision_scatter(rows: Sequence[dict[str, Any]], *, x: str, y: str, x_title: str,
                     y_title: str, title: str, y_higher: bool = False,
                     pick: str | None = None, log: bool = True) -> go.Figure | None:
    """One marker per variant (details on hover, no overprinted labels), the front of this
    pair of axes as points joined by a step line, and the pick starred. None when empty."""
    rows = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not rows:
        return None
    pts = [(float(r[x]), float(r[y])) for r in rows]
    front = front_2d(pts, y_higher=y_higher)
    hover = [_hover(r) for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name="variants",
        marker={"size": 11, "color": "steelblue", "line": {"width": 1, "color": "white"}},
        hovertext=hover, hoverinfo="text"))
    fig.add_trace(go.Scatter(
        x=[pts[i][0] for i in front], y=[pts[i][1] for i in front], mode="lines+markers",
        line={"shape": "hv", "color": FRONT_COLOR, "width": 1.5},
        marker={"size": 13, "color": FRONT_COLOR}, name="best trade-offs (front)",
        hovertext=[hover[i] for i in front], hoverinfo="text"))
    chosen = [i for i, r in enumerate(rows) if pick and pick in (r.get("variant"), r.get("name"))]
    if chosen:
        fig.add_trace(go.Scatter(
            x=[pts[i][0] for i in chosen], y=[pts[i][1] for i in chosen], mode="markers",
            marker={"size": 22, "symbol": "star", "color": "gold",
                    "line": {"width": 1, "color": "black"}}, name="pick",
            hovertext=[hover[i] for i in chosen], hoverinfo="text"))
    return _tidy(fig, title=title, x_title=x_title, y_title=y_title, log_x=log,
                 log_y=log and not y_higher)


def _hover(row: dict[str, Any]) -> str:
    """The figures of one variant, rounded, for its hover box."""
    parts = [f"<b>{row.get('name') or row.get('variant')}</b>"]
    if row.get("name") and row.get("variant") and row["name"] != row["variant"]:
        parts.append(str(row["variant"]))
    acc = row.get("accuracy")
    if isinstance(acc, (int, float)):
        parts.append(f"accuracy {acc:.4f}")
    size = row.get("size_bytes")
    size_kb = size / 1024 if isinstance(size, (int, float)) else row.get("size (KB)")
    if isinstance(size_kb, (int, float)):
        parts.append(f"size {size_kb:.1f} KB")
    for key, label in (("p50_b1", "p50 batch 1"), ("p50_b64", "p50 batch 64"),
                       ("p50 b1 (ms)", "p50 batch 1"), ("p50 b64 (ms)", "p50 batch 64")):
        if isinstance(row.get(key), (int, float)):
            parts.append(f"{label} {row[key]:.3f} ms")
    return "<br>".join(parts)


def _tidy(fig: go.Figure, *, title: str, x_title: str, y_title: str, log_x: bool = False,
          log_y: bool = False, height: int = 400) -> go.Figure:
    """Readable layout: a title that fits, few rounded ticks, the legend below the plot."""
    fig.update_layout(
        title={"text": title, "font": {"size": 14}, "x": 0, "xanchor": "left"},
        height=height, template="plotly_white", hovermode="closest",
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    fig.update_xaxes(title_text=x_title, nticks=6, automargin=True,
                     type="log" if log_x else "linear", tickformat=".3~g",
                     **_log_ticks(fig, "x", log_x))
    fig.update_yaxes(title_text=y_title, nticks=6, automargin=True,
                     type="log" if log_y else "linear", tickformat=".3~g",
                     **_log_ticks(fig, "y", log_y))
    return fit_title(fig)


def _log_ticks(fig: go.Figure, axis: str, log: bool) -> dict[str, Any]:
    """On a log axis Plotly labels every digit (0.7 0.8 0.9 1 overprinted on a phone): label
    only 1, 2 and 5 of each decade, when the data reach two of them. A narrower span (e.g.
    0.65–0.75 ms) would then show no number at all: Plotly's own ticks label it instead."""
    values = [float(v) for trace in fig.data for v in (getattr(trace, axis, None) or ())
              if isinstance(v, (int, float)) and v > 0]
    if not log or not values:
        return {}
    low, high = min(values), max(values)
    marks = [m * 10.0 ** k for k in range(math.floor(math.log10(low)) - 1,
                                          math.ceil(math.log10(high)) + 1) for m in (1, 2, 5)]
    return {"dtick": "D2"} if sum(low <= m <= high for m in marks) >= 2 else {}


def named_rows(rows: Sequence[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Comparison rows with the friendly name of each variant (run id when unknown)."""
    return [{**r, "name": names.get(str(r.get("variant")), str(r.get("variant")))}
            for r in rows]


def comparison_charts(rows: Sequence[dict[str, Any]], pick: str | None = None
                      ) -> tuple[Any, Any]:
    """Size vs latency and accuracy vs latency (batch 64) of re-measured rows."""
    size = [{**r, "size_kb": r["size_bytes"] / 1024} for r in rows
            if r.get("size_bytes") is not None]
    sl = decision_scatter(size, x="p50_b64", y="size_kb", x_title="p50 latency, batch 64 (ms)",
                          y_title="size on disk (KB)", pick=pick,
                          title="Size vs latency — lower-left is better")
    al = decision_scatter(rows, x="p50_b64", y="accuracy", y_higher=True, pick=pick,
                          x_title="p50 latency, batch 64 (ms)", y_title="accuracy",
                          title="Accuracy vs latency — upper-left is better")
    return sl, al


# The bars a decision needs (the HTML report's core.compare.metric_bars shows more).
VARIANT_BARS = (("accuracy", "accuracy", 1.0), ("size_bytes", "size (KB)", 1 / 1024),
                ("p50_b1", "p50 batch 1 (ms)", 1.0), ("p50_b64", "p50 batch 64 (ms)", 1.0))


def variant_bars(rows: Sequence[dict[str, Any]]) -> Any:
    """Accuracy, size and latency per variant in a 2×2 grid: one colour per variant, named
    once in the legend below (names under the bars overprinted on a phone); the baseline
    grey. None when there is nothing to draw."""
    from plotly.colors import qualitative

    metrics = [m for m in VARIANT_BARS if any(r.get(m[0]) is not None for r in rows)]
    if not rows or not metrics:
        return None
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[m[1] for m in metrics],
                        vertical_spacing=0.2, horizontal_spacing=0.18)
    names = [str(r.get("name") or r.get("variant")) for r in rows]
    for j, row in enumerate(rows):
        name = names[j]
        if names.count(name) > 1:  # two variants with one name: tell them apart by id
            name = f"{name} · {str(row.get('variant'))[-4:]}"
        color = "gray" if row.get("baseline") else qualitative.Plotly[j % 10]
        for i, (key, label, scale) in enumerate(metrics):
            value = row.get(key)
            fig.add_trace(go.Bar(
                x=[name], y=[value * scale if value is not None else None], name=name,
                legendgroup=name, showlegend=i == 0, marker_color=color,
                hovertemplate=f"{name}<br>{label} %{{y:.4g}}<extra></extra>"),
                row=i // 2 + 1, col=i % 2 + 1)
    fig.update_annotations(font={"size": 12})  # the subplot titles
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(nticks=5, tickformat=".3~g", rangemode="tozero")
    fig.update_layout(title="Figures per variant (grey = baseline)", height=600,
                      barmode="overlay", template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 50, "b": 20},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.04, "x": 0})
    return fit_title(fig)


def phone_panels(fig: Any, *, title_chars: int = 16) -> Any:
    """A one-row figure of several panels made readable on a phone: the legend below the
    panels (beside them it squeezed each panel to a few pixels), short two-line panel
    titles, small tick labels and the main title fitted."""
    import textwrap

    if fig is None:
        return fig
    for note in fig.layout.annotations:  # make_subplots' panel titles
        note.text = "<br>".join(textwrap.wrap(str(note.text), title_chars))
        note.font = {"size": 11}
    fig.update_xaxes(tickfont={"size": 10}, title_font={"size": 11})
    fig.update_yaxes(tickfont={"size": 10}, nticks=5)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0},
                      height=(fig.layout.height or 340) + 80,
                      margin={"t": max(90, fig.layout.margin.t or 0), "b": 110})
    fit_title(fig)
    fig.update_layout(margin={"t": max(90, fig.layout.margin.t or 0)})
    return fig
