"""``plot_efficiency_over_tasks``: accuracy, size and latency after each task (Plotly)."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["plot_efficiency_over_tasks"]


def _rows(source: Any) -> list[Mapping[str, Any]]:
    from core.errors import InvalidParameterError

    if hasattr(source, "report"):
        source = source.report
    if isinstance(source, Mapping):
        source = (source.get("continual") or source).get("tasks")
    if not isinstance(source, list) or not source:
        raise InvalidParameterError("source", "a continual report (or its 'tasks' rows)",
                                    type(source).__name__)
    return source


def plot_efficiency_over_tasks(source: Any, *, title: str = "Efficiency over tasks") -> Any:
    """A 3-panel Plotly figure from a continual report, RunResult or its task rows:
    accuracy on each task seen and the average; artifact size; latency p50 at batch 1/64."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = _rows(source)
    x = [r["task"] for r in rows]
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        "Accuracy on tasks seen", "Artifact size (KB)", "Latency p50 (ms)"))
    n = max(len(r["accuracy"]) for r in rows)
    for j in range(n):
        pts = [(r["task"], r["accuracy"][j]) for r in rows if j < len(r["accuracy"])
               and r["accuracy"][j] is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts],
                                 mode="lines+markers", name=f"task {j + 1}",
                                 line={"width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[r["average_accuracy"] for r in rows], name="average",
                             mode="lines+markers", line={"width": 3, "color": "black"}),
                  row=1, col=1)
    size = [r.get("size_bytes", r.get("artifact_bytes", 0)) / 1024 for r in rows]
    fig.add_trace(go.Bar(x=x, y=size, name="size KB", showlegend=False), row=1, col=2)
    for bs in ("1", "64"):
        lat = [(r.get("latency_ms") or {}).get(bs, {}).get("p50") for r in rows]
        if any(v is not None for v in lat):
            fig.add_trace(go.Scatter(x=x, y=lat, mode="lines+markers", name=f"p50 batch {bs}"),
                          row=1, col=3)
    fig.update_xaxes(title_text="after task", dtick=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_layout(title={"text": title, "x": 0}, height=340, template="plotly_white",
                      margin={"l": 40, "r": 10, "t": 60, "b": 40})
    return fig
