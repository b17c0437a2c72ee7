"""Chart helpers of the studio: titles that fit a phone, bars named once per variant."""

from __future__ import annotations

import re


def _lines(title: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", line) for line in title.split("<br>")]


def test_fit_title_wraps_long_titles_and_makes_room():
    import plotly.graph_objects as go

    from studio.charts import TITLE_CHARS, fit_title

    long = "Layer widths before vs after (output channels / neurons)"
    fig = fit_title(go.Figure(layout={"title": long, "margin": {"t": 40}}))
    lines = _lines(fig.layout.title.text)
    assert lines[0] == "Layer widths before vs after" and len(lines) >= 2
    assert all(len(line) <= TITLE_CHARS * 1.25 for line in lines)
    assert " ".join(lines).replace("  ", " ") == long
    assert fig.layout.margin.t > 40  # room for the extra line
    short = fit_title(go.Figure(layout={"title": "Training"}))
    assert short.layout.title.text == "Training"
    assert fit_title(None) is None


def test_variant_bars_name_each_variant_once():
    from studio.charts import variant_bars

    rows = [{"variant": "train-aaaa", "name": "CNN on digits", "baseline": True,
             "accuracy": 0.97, "size_bytes": 2048, "p50_b1": 0.1, "p50_b64": 1.0},
            {"variant": "quantize-bbbb", "name": "CNN on digits", "accuracy": 0.96,
             "size_bytes": 1024, "p50_b1": 0.05, "p50_b64": None}]
    fig = variant_bars(rows)
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == ["CNN on digits · aaaa", "CNN on digits · bbbb"]  # same name: told apart
    assert [t.marker.color for t in fig.data if t.showlegend][0] == "gray"  # the baseline
    assert {a.text for a in fig.layout.annotations} == {
        "accuracy", "size (KB)", "p50 batch 1 (ms)", "p50 batch 64 (ms)"}
    sizes = [t.y[0] for t in fig.data if t.hovertemplate and "size (KB)" in t.hovertemplate]
    assert sizes == [2.0, 1.0]
    assert variant_bars([]) is None


def test_phone_panels_put_the_legend_below_and_shorten_panel_titles():
    from core.continual import plot_efficiency_over_tasks
    from studio.charts import phone_panels

    rows = [{"task": t, "accuracy": [0.9] * t, "average_accuracy": 0.9, "size_bytes": 2048,
             "latency_ms": {"1": {"p50": 0.05}}} for t in (1, 2)]
    fig = phone_panels(plot_efficiency_over_tasks(rows))
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.y < 0
    lines = [line for a in fig.layout.annotations for line in a.text.split("<br>")]
    assert "Accuracy on" in lines and all(len(line) <= 16 for line in lines)


def test_a_selected_table_row_stars_its_point():
    import gradio as gr

    from studio.tabs.comparison import marked_points

    rows = [{"name": "CNN on digits", "variant": "train-1", "p50 b64 (ms)": 2.0,
             "size (KB)": 30.0},
            {"name": "↳ INT8", "variant": "quantize-2", "p50 b64 (ms)": 1.0, "size (KB)": 9.0}]
    pick = gr.SelectData(None, {"index": [1, 0], "value": "↳ INT8", "selected": True,
                                "row_value": ["↳ INT8", "quantize-2", 9.0]})
    chart, _ = marked_points({"rows": rows, "remeasured": False}, pick)
    star = next(t for t in chart.data if t.name == "pick")
    assert (list(star.x), list(star.y)) == ([1.0], [9.0])
    measured = [{"name": "↳ INT8", "variant": "quantize-2", "p50_b64": 1.0, "accuracy": 0.9,
                 "size_bytes": 9216}]
    sizes, accuracy = marked_points({"rows": measured, "remeasured": True}, pick)
    assert [t.name for t in sizes.data].count("pick") == 1
    assert [t.name for t in accuracy.data].count("pick") == 1


def test_tuning_history_of_one_trial_stays_near_its_value():
    from studio.tabs.tuning import history_chart

    fig = history_chart([{"number": 0, "values": {"accuracy": 0.97}}], "accuracy", "maximize")
    low, high = fig.layout.yaxis.range
    assert 0.9 < low < 0.97 < high < 1.0
