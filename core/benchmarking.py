"""The seeds' benchmark helpers over the studio's one measurement protocol:
``benchmark_models`` (every model timed interleaved in one run), ``plot_optimization_comparison``
(the seeds' four panels, Plotly) and ``create_efficiency_report`` (Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["benchmark_models", "create_efficiency_report", "plot_optimization_comparison"]


def benchmark_models(models: Mapping[str, Any], data: Any = None, *, test_loader: Any = None,
                     measure_options: Mapping[str, Any] | None = None) -> dict[str, dict]:
    """Measure every model (modules, ORT sessions, .onnx paths) side by side on the test split.

    Returns ``{name: {size_mb, latency_ms, fps, memory_mb, accuracy, params, ...}}`` with the
    full measurement under ``"measurement"``.
    """
    from core.data import load_dataset
    from core.measure import measure_many
    from core.seed_compat import dataset_from_loader

    if not models:
        raise ValueError("benchmark_models needs at least one model.")
    if data is None and test_loader is not None:
        data = dataset_from_loader(test_loader, test_loader)
    if data is None:
        from core.seed_compat import infer_builtin_data

        data = infer_builtin_data(next(iter(models.values())))
    data = load_dataset(data) if isinstance(data, (str, Path)) else data
    measured = measure_many(dict(models), data, **dict(measure_options or {}))
    out = {}
    for name, m in measured.items():
        b1 = m.p50(1)
        out[name] = {"size_mb": m.size_bytes / 2**20, "latency_ms": b1,
                     "fps": 1000.0 / b1 if b1 else None, "throughput_per_s": m.throughput_per_s,
                     "memory_mb": m.peak_memory_mb, "accuracy": 100.0 * m.accuracy,
                     "params": m.params, "measurement": m.to_dict()}
    return out


def plot_optimization_comparison(results: Mapping[str, Mapping[str, Any]],
                                 save_path: str | Path | None = None) -> Any:
    """Four panels: size, speed (FPS), accuracy, and size vs speed coloured by accuracy."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(results)
    col = {k: [results[n].get(k) for n in names] for k in ("size_mb", "fps", "accuracy")}
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "Model size (MB)", "Inference speed (FPS, batch 1)", "Accuracy (%)",
        "Size vs speed (colour: accuracy)"))
    fig.add_trace(go.Bar(x=names, y=col["size_mb"], name="size"), row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=col["fps"], name="FPS"), row=1, col=2)
    fig.add_trace(go.Bar(x=names, y=col["accuracy"], name="accuracy"), row=2, col=1)
    fig.add_trace(go.Scatter(x=col["size_mb"], y=col["fps"], text=names, mode="markers+text",
                             marker={"color": col["accuracy"], "colorscale": "Viridis",
                                     "showscale": True, "size": 12}, name="models"),
                  row=2, col=2)
    fig.update_layout(showlegend=False, height=700, title="Optimization comparison")
    if save_path is not None:
        path = Path(save_path)
        if path.suffix != ".html":
            raise ValueError(f"save_path must end in .html (got '{path.name}').")
        fig.write_html(str(path))
    return fig


def create_efficiency_report(results: Mapping[str, Mapping[str, Any]],
                             save_path: str | Path | None = None,
                             baseline: str | None = None) -> str:
    """A Markdown report: one row per model, ratios against ``baseline`` (default: first)."""
    names = list(results)
    base = results[baseline or names[0]]
    lines = ["# Efficiency report", "",
             f"Ratios are against `{baseline or names[0]}`; every model was measured in the "
             "same run, interleaved (batch 1 latency).", "",
             "| model | size (MB) | latency (ms) | FPS | memory (MB) | accuracy (%) | params | "
             "size ratio | speed-up |", "|---|---|---|---|---|---|---|---|---|"]

    def fmt(v: Any, spec: str = ".3f") -> str:
        return "–" if v is None else format(v, spec)

    for n in names:
        r = results[n]
        size_ratio = base["size_mb"] / r["size_mb"] if r.get("size_mb") else None
        speed = base["latency_ms"] / r["latency_ms"] if r.get("latency_ms") else None
        lines.append(f"| {n} | {fmt(r.get('size_mb'))} | {fmt(r.get('latency_ms'))} | "
                     f"{fmt(r.get('fps'), '.1f')} | {fmt(r.get('memory_mb'), '.1f')} | "
                     f"{fmt(r.get('accuracy'), '.2f')} | {fmt(r.get('params'), ',')} | "
                     f"{fmt(size_ratio, '.2f')}× | {fmt(speed, '.2f')}× |")
    text = "\n".join(lines) + "\n"
    if save_path is not None:
        Path(save_path).write_text(text)
    return text
