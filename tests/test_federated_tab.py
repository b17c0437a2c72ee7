"""The Scalability tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_scale_tab_runs_and_offers_downloads(client):
    from studio.tabs.scalability import SYNTHETIC

    update = client.predict(api_name="/scale_variants")
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in update["choices"]]
    assert SYNTHETIC in choices
    value = SYNTHETIC
    job = client.submit(value, "3,8", 3, 16, "reptile", 0.5, 0.25, 1.0, "builtin", 1,
                        api_name="/scale")
    status, t_plot, m_plot, acc_plot, conv_plot, table, files = job.result()
    assert "Done" in status and "reptile" in status
    assert [row[0] for row in table["data"]] == [3, 8]
    assert "time per round (ms)" in table["headers"] and "total_s" not in table["headers"]
    floats = [v for row in table["data"] for v in row if isinstance(v, float)]
    assert floats and all(round(v, 4) == v for v in floats)  # rounded for reading
    names = sorted(Path(f).name for f in files)
    assert names == ["report.json", "rounds.csv", "scalability.csv"]
    report = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert report["operation"] == "scale" and len(report["scalability"]["results"]) == 2
    assert t_plot is not None and acc_plot is not None


def test_scale_tab_bad_input_is_a_clear_error(client):
    with pytest.raises(Exception, match="client"):
        client.predict(None, "0,4", 3, 16, "fedavg", 0, 0.0, 1.0, "builtin", 1,
                       api_name="/scale")
    with pytest.raises(Exception, match="stratified"):
        client.predict(None, "4", 3, 2, "fedavg", 0, 0.0, 1.0, "builtin", 1,
                       api_name="/scale")
    with pytest.raises(Exception, match="alpha"):
        client.predict(None, "4", 3, 16, "fedavg", -1, 0.0, 1.0, "builtin", 1,
                       api_name="/scale")
