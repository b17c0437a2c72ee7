"""The Model & Data tab through gradio_client: the current model is shown, and a failed
training leaves the previous model's figures in place."""

from __future__ import annotations

import pytest


def test_a_failed_training_keeps_the_previous_model(client):
    status, _curve, table = client.predict("digits", "cnn", None, "label", 1, 0.01,
                                           api_name="/train_baseline")
    assert "Trained" in status
    job = client.submit("wine", "vit", None, "label", 1, 0.01, api_name="/train_baseline")
    with pytest.raises(Exception):
        job.result()
    last_status, _curve, last_table = job.outputs()[-1]
    assert last_status.startswith("**Failed**") and "current model is unchanged" in last_status
    assert "CNN on digits" in last_status
    assert last_table["data"] == table["data"]  # the previous figures, not a blank


def test_charts_have_no_overprinted_labels_and_a_monotone_front():
    from studio.charts import decision_scatter, front_2d

    pts = [(1.0, 50.0), (2.0, 20.0), (3.0, 30.0), (4.0, 10.0), (0.5, 80.0)]
    front = front_2d(pts, y_higher=False)
    xs, ys = [pts[i][0] for i in front], [pts[i][1] for i in front]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # a staircase, no zig-zag
    assert 2 not in front  # (3, 30) is beaten by (2, 20)
    rows = [{"variant": f"v{i}", "name": f"model {i}", "x": x, "y": y}
            for i, (x, y) in enumerate(pts)]
    fig = decision_scatter(rows, x="x", y="y", x_title="x", y_title="y", title="t",
                           pick="v3")
    assert all("text" not in (trace.mode or "") for trace in fig.data)
    assert "model 1" in fig.data[0].hovertext[1]
    assert [t.name for t in fig.data][-1] == "pick" and list(fig.data[-1].x) == [4.0]
    assert decision_scatter([], x="x", y="y", x_title="", y_title="", title="") is None


def test_pruning_bar_labels_are_the_widths_the_bars_show():
    from studio.tabs.pruning import layer_chart

    layers = [{"layer": "conv1", "width_before": 16, "width_after": 8, "nonzero_before": 144,
               "nonzero_after": 72, "sparsity": 0.5},
              {"layer": "conv2", "width_before": 32, "width_after": 16,
               "nonzero_before": 4608, "nonzero_after": 1152, "sparsity": 0.75},
              {"layer": "fc", "width_before": 10, "width_after": 10, "nonzero_before": 2560,
               "nonzero_after": 1280, "sparsity": 0.5}]
    before, after = layer_chart(layers, structured=True).data
    assert list(after.text) == [f"{b}→{a}" for b, a in zip(before.y, after.y)]
    assert "75 % of its weights removed" in after.hovertext[1]
    unstructured = layer_chart(layers, structured=False).data[1]
    assert list(unstructured.text) == ["50 % zeroed", "75 % zeroed", "50 % zeroed"]
    assert layer_chart([], structured=True) is None


def test_stop_says_stopped_and_keeps_the_current_model(client, studio_server, tmp_path):
    import time

    from gradio_client import handle_file

    from tests.helpers.rest import slow_npz

    client.predict("digits", "cnn", None, "label", 1, 0.01, api_name="/train_baseline")
    slow = slow_npz(tmp_path / "slow.npz")  # still training when Stop is sent below
    job = client.submit("digits", "cnn", handle_file(str(slow)), "label", 100, 0.01,
                        api_name="/train_baseline")
    deadline = time.monotonic() + 120
    while not any("Epoch" in str(o[0]) for o in job.outputs()):
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    assert "Stopped" in client.predict(api_name="/stop_train")
    with pytest.raises(Exception, match="Stopped"):
        job.result()
    last = job.outputs()[-1][0]
    assert last.startswith("**Stopped**") and "current model is unchanged" in last
    # Stop cancels the job; its process ends at its next check, a moment later.
    deadline = time.monotonic() + 60
    while "running" in (states := _job_states(client)):
        assert time.monotonic() < deadline, f"the stopped job is still running: {states}"
        time.sleep(0.2)
    assert "cancelled" in states


def _job_states(client) -> list[str]:
    jobs, _ = client.predict(api_name="/list_jobs")
    return [r[jobs["headers"].index("status")] for r in jobs["data"]]
