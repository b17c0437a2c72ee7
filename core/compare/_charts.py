"""Plotly figures of a comparison (shared by the HTML report and the Comparison tab)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["accuracy_latency", "all_figures", "lineage_graph", "metric_bars", "size_latency"]

Row = Mapping[str, Any]


def _layout(fig: Any, title: str, x: str, y: str, height: int = 420) -> Any:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height,
                      margin={"l": 60, "r": 30, "t": 50, "b": 50}, template="plotly_white")
    return fig


def size_latency(rows: Sequence[Row], batch: str = "64") -> Any:
    """Size vs p50 latency coloured by accuracy; the Pareto front ringed and joined."""
    import plotly.graph_objects as go

    key = f"p50_b{batch}"
    rows = [r for r in rows if r.get(key) is not None]
    accs = [r["accuracy"] for r in rows] or [0.0]
    fig = go.Figure(go.Scatter(
        x=[r[key] for r in rows], y=[r["size_bytes"] / 1024 for r in rows],
        text=[r["variant"] for r in rows], mode="markers+text", textposition="top center",
        name="variants",
        marker={"size": 14, "color": accs, "colorscale": "Viridis",
                "cmin": min(min(accs), max(accs) - 0.01), "cmax": max(accs),
                "showscale": True, "colorbar": {"title": "accuracy"}},
        customdata=[[r["accuracy"]] for r in rows],
        hovertemplate="%{text}<br>p50 %{x:.3f} ms<br>%{y:.1f} KB<br>accuracy "
                      "%{customdata[0]:.4f}<extra></extra>",
    ))
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r[key])
    if front:
        fig.add_trace(go.Scatter(
            x=[r[key] for r in front], y=[r["size_bytes"] / 1024 for r in front],
            mode="lines+markers", name="Pareto front (size, latency, accuracy)",
            line={"color": "crimson", "dash": "dot"},
            marker={"size": 22, "symbol": "circle-open", "color": "crimson",
                    "line": {"width": 2}}, hoverinfo="skip"))
    fig.update_xaxes(type="log", tickformat=".4~g")  # full labels, not "2 3 … 9"
    fig.update_yaxes(type="log", tickformat=".4~g")
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
    return _layout(fig, f"Size vs latency (batch {batch}); lower-left is better",
                   f"p50 latency at batch {batch} (ms, log)", "size on disk (KB, log)")


def accuracy_latency(rows: Sequence[Row], batch: str = "64") -> Any:
    """Accuracy vs p50 latency; upper-left is better."""
    import plotly.graph_objects as go

    key = f"p50_b{batch}"
    rows = [r for r in rows if r.get(key) is not None]
    fig = go.Figure(go.Scatter(
        x=[r[key] for r in rows], y=[r["accuracy"] for r in rows],
        text=[r["variant"] for r in rows], mode="markers+text", textposition="top center",
        marker={"size": 13, "color": ["crimson" if r.get("pareto") else "steelblue"
                                      for r in rows]},
        hovertemplate="%{text}<br>p50 %{x:.3f} ms<br>accuracy %{y:.4f}<extra></extra>"))
    fig.update_xaxes(type="log", tickformat=".4~g")  # full labels, not "2 3 … 9"
    return _layout(fig, f"Accuracy vs latency (batch {batch}); upper-left is better; red = "
                   "Pareto front", f"p50 latency at batch {batch} (ms, log)", "accuracy")


BAR_METRICS = [("size_bytes", "size (KB)", 1 / 1024), ("p50_b1", "p50 b1 (ms)", 1),
               ("p50_b64", "p50 b64 (ms)", 1), ("accuracy", "accuracy", 1),
               ("peak_memory_mb", "peak memory (MB)", 1), ("params", "params", 1)]


def metric_bars(rows: Sequence[Row]) -> Any:
    """One bar chart per metric, a bar per variant."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in BAR_METRICS if any(r.get(m[0]) is not None for r in rows)]
    cols = 3
    nrows = max(1, -(-len(metrics) // cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[m[1] for m in metrics])
    names = [r["variant"] for r in rows]
    for i, (key, label, scale) in enumerate(metrics):
        fig.add_trace(go.Bar(
            x=names, y=[(r.get(key) or 0) * scale for r in rows], name=label, showlegend=False,
            marker={"color": ["gray" if r.get("baseline") else "steelblue" for r in rows]}),
            row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(showticklabels=len(names) <= 6)
    fig.update_layout(title="Figures per variant (grey = baseline)", height=320 * nrows,
                      margin={"l": 50, "r": 20, "t": 70, "b": 40}, template="plotly_white")
    return fig


def lineage_graph(rows: Sequence[Row]) -> Any:
    """Each variant placed by its depth in the lineage (parent → child arrows)."""
    import plotly.graph_objects as go

    by_id = {r["variant"]: r for r in rows}
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        nodes[r["variant"]] = {"label": f"{r['operation']} {r.get('method') or ''}".strip(),
                               "parent": r.get("parent"), "compared": True}
        parent = r.get("parent")
        if parent and parent not in by_id and parent not in nodes:
            nodes[parent] = {"label": "(not compared)", "parent": None, "compared": False}

    def depth(name: str, seen: tuple[str, ...] = ()) -> int:
        parent = nodes[name]["parent"]
        if not parent or parent not in nodes or parent in seen:
            return 0
        return 1 + depth(parent, seen + (name,))

    levels: dict[int, list[str]] = {}
    for name in nodes:
        levels.setdefault(depth(name), []).append(name)
    pos = {n: (d, -i) for d, names in levels.items() for i, n in enumerate(names)}
    fig = go.Figure()
    for name, node in nodes.items():
        parent = node["parent"]
        if parent in pos:
            (x0, y0), (x1, y1) = pos[parent], pos[name]
            fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x",
                               ayref="y", showarrow=True, arrowhead=3, arrowwidth=1.5,
                               standoff=12, startstandoff=12, arrowcolor="gray")
    fig.add_trace(go.Scatter(
        x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers+text",
        text=[f"{nodes[n]['label']}<br>{n}" for n in nodes], textposition="bottom center",
        marker={"size": 16, "color": ["steelblue" if nodes[n]["compared"] else "lightgray"
                                      for n in nodes]},
        hoverinfo="text", showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.5, max(levels) + 0.5])
    fig.update_yaxes(visible=False)
    height = 160 + 90 * max(len(v) for v in levels.values())
    fig.update_layout(title="Lineage (baseline → prune → distill → quantize …)", height=height,
                      margin={"l": 20, "r": 20, "t": 50, "b": 30}, template="plotly_white")
    return fig


def all_figures(rows: Sequence[Row]) -> dict[str, Any]:
    """Every chart of a comparison, by name."""
    return {"size_latency": size_latency(rows), "accuracy_latency": accuracy_latency(rows),
            "metric_bars": metric_bars(rows), "lineage": lineage_graph(rows)}
