"""A Plotly bar chart of a profile: time per layer, bottlenecks highlighted."""

from __future__ import annotations

from typing import Any

from core.profiling._result import Profile


def profile_chart(prof: Profile, *, threshold: float = 0.05, limit: int = 30) -> Any:
    """Horizontal bars of the slowest ``limit`` layers (ms), coloured when ≥ ``threshold``."""
    import plotly.graph_objects as go

    hot = {lay.name for lay in prof.find_bottlenecks(threshold)}
    rows = sorted(prof.layers, key=lambda lay: lay.time_ms)[-limit:]
    fig = go.Figure(go.Bar(
        x=[lay.time_ms for lay in rows], y=[lay.name for lay in rows], orientation="h",
        marker_color=["#d62728" if lay.name in hot else "#1f77b4" for lay in rows],
        text=[f"{100 * lay.share:.1f} %" for lay in rows], textposition="outside",
        customdata=[lay.kind for lay in rows],
        hovertemplate="%{y} (%{customdata}): %{x:.4f} ms<extra></extra>"))
    fig.update_layout(
        title=f"Time per layer ({prof.backend}, batch {prof.batch_size}, {prof.threads} "
              f"thread(s)); red: ≥ {100 * threshold:.0f} % of {prof.total_ms:.3f} ms",
        xaxis_title="median ms per forward", height=max(300, 24 * len(rows) + 120))
    return fig
