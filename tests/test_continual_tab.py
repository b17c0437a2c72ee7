"""The Continual tab driven through gradio_client, as a browser session would use it."""

from __future__ import annotations

import json
from pathlib import Path


def test_continual_tab_runs_and_offers_downloads(client):
    status, plot, table, matrix, files = client.predict(
        "split-digits", 2, "mlp", 30, 1, "none", 0.5, "none", 0.01, api_name="/continual")
    assert "Done" in status and "2 tasks" in status
    assert len(matrix["data"]) == 2 and plot is not None and len(table["data"]) == 2
    assert sorted(Path(f).name for f in files) == ["report.json", "tasks.csv"]
    report = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert report["operation"] == "continual"

