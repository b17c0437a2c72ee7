"""The Edge tab driven through gradio_client: the profiler names the bottlenecks, fusion runs
as a job and is measured side by side with its input."""

from __future__ import annotations


def test_edge_tab_profiles_and_fuses(client):
    client.predict("digits", "cnn", None, "label", 1, 0.01, api_name="/train_baseline")
    choice = client.predict(api_name="/edge_variants")
    value = choice["value"] if isinstance(choice, dict) else choice
    status, chart, table = client.predict(value, 1, 0.05, api_name="/profile")
    assert "Bottlenecks" in status and chart is not None
    rows, headers = table["data"], table["headers"]
    shares = [r[headers.index("share (%)")] for r in rows]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 105
    assert any(r[headers.index("bottleneck")] == "yes" for r in rows)

    status, result = client.predict(value, ["conv-bn-relu"], api_name="/fuse")
    assert "fuse" in status and "graph nodes" in status
    assert [r[0] for r in result["data"]] == ["input (baseline)", "fuse"]
