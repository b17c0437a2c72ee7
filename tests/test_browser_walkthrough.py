"""A user's own model in the browser: an ONNX export of a small residual CNN (torch's default
dynamo exporter: model.onnx + model.onnx.data) and an .npz of images, uploaded, measured, and
found again after a reload, under the user's own file names; charts keep their numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import onnx_zoo
from tests.helpers.browser import CHROMIUM, FLAGS, MARKS, open_studio, overlapping_chart_text

pytestmark = MARKS


@pytest.fixture(scope="module")
def pw():
    """One Playwright per module: its sync API cannot be started twice in one thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def _residual_cnn():
    """Stem conv, one residual block (conv-BN-ReLU-conv + skip), global average pool, linear."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            return self.head(torch.relu(x + self.body(x)).mean((2, 3)))

    torch.manual_seed(0)
    return Residual()


@pytest.fixture(scope="module")
def user_files(tmp_path_factory, digits) -> Path:
    """model.onnx + model.onnx.data (as torch writes them) and images.npz, in one folder."""
    import numpy as np
    import torch

    out = tmp_path_factory.mktemp("mine")
    net = onnx_zoo.train_tiny(_residual_cnn(), digits.X_train, digits.y_train, epochs=4)
    onnx_zoo.export_default(net, out / "model.onnx", torch.from_numpy(digits.X_test[:1]))
    assert (out / "model.onnx.data").exists()
    np.savez(out / "images.npz", X=np.concatenate([digits.X_train, digits.X_test]),
             y=np.concatenate([digits.y_train, digits.y_test]))
    return out


# Chart titles that their block's label badge ("Size vs latency (select a table row …)") is
# drawn over: the badge sat over the chart's top-left corner, where Plotly draws the title.
TITLES_UNDER_BADGES = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter((plot) => plot.offsetParent && plot.querySelector('text.gtitle'))
  .filter((plot) => {
    const badge = plot.closest('.block').querySelector(':scope > label');
    if (!badge) return false;
    const a = badge.getBoundingClientRect();
    const b = plot.querySelector('text.gtitle').getBoundingClientRect();
    return !(a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top);
  }).map((plot) => plot.querySelector('text.gtitle').textContent)"""


def test_an_uploaded_export_keeps_the_users_file_names_across_a_reload(pw, studio_server,
                                                                      user_files, tmp_path):
    """Measured without its model.onnx.data, the status keeps saying why (not only a toast
    that goes away) and the refused file's picker empties (the file is gone from the server).
    With both, the current-model bar and status name the upload "Uploaded model.onnx on
    images" (not the random names it is stored under), the shown accuracy is the run's
    report.json, and a reload finds the same model, name and figures, and the Comparison tab
    its last re-measurement (status and charts). No chart title there is covered by its
    chart's label badge, on a desktop or a phone."""
    from playwright.sync_api import expect

    url, ctx = studio_server
    context, page = open_studio(pw, tmp_path / "profile", url)
    try:
        page.get_by_text("Your own data or model").click()
        page.locator("#model_data-data-file input[type=file]").set_input_files(
            str(user_files / "images.npz"))
        page.locator("#model_data-model-file input[type=file]").set_input_files(
            str(user_files / "model.onnx"))
        page.get_by_text("Preview").first.wait_for()  # the data file was read
        status = page.locator("#model_data-status")
        page.get_by_role("button", name="Measure uploaded model").click()  # .data forgotten
        expect(status).to_contain_text("Failed — 'model.onnx' keeps its weights in "
                                       "'model.onnx.data', which was not uploaded")
        assert str(ctx.root) not in status.inner_text()
        # the refused file is gone from the server: its picker empties and asks for it again
        expect(page.locator("#model_data-model-file")).to_contain_text("Click to Upload")
        page.locator("#model_data-model-file input[type=file]").set_input_files(
            str(user_files / "model.onnx"))
        page.locator("#model_data-model-weights input[type=file]").set_input_files(
            str(user_files / "model.onnx.data"))
        page.get_by_role("button", name="Measure uploaded model").click()
        expect(status).to_contain_text("Measured benchmark-", timeout=120_000)
        run_id = re.search(r"benchmark-[0-9a-f]+", status.inner_text()).group(0)
        report = json.loads(next(ctx.root.rglob(f"{run_id}/report.json")).read_text())
        accuracy = f"{report['result']['accuracy']:.4f}"
        bar = page.locator("#current-model input")
        expect(bar).to_have_value(re.compile(r"^Uploaded model\.onnx on images "))
        expect(status).to_contain_text(f"accuracy {accuracy}")
        page.get_by_role("tab", name="Comparison").click()
        compared = page.locator("#comparison-tab .run-status").first
        page.get_by_role("button", name="Re-measure all").click()
        expect(compared).to_contain_text("Re-measured 1 variant(s)", timeout=120_000)

        page.reload()
        page.get_by_role("button", name="Train baseline").wait_for(timeout=60_000)
        expect(bar).to_have_value(re.compile(r"^Uploaded model\.onnx on images "))
        expect(status).to_contain_text("Current model: Uploaded model.onnx on images")
        expect(status).to_contain_text(f"{run_id}: accuracy {accuracy}")
        expect(page.locator("#model_data-figures")).to_contain_text(accuracy)

        page.get_by_role("tab", name="Comparison").click()  # the last re-measure, charts too
        expect(compared).to_contain_text("Re-measured 1 variant(s)")
        charts = page.locator("#comparison-tab .js-plotly-plot").filter(visible=True)
        expect(charts).to_have_count(4)
        page.locator("#comparison-tab .js-plotly-plot text.gtitle").first.wait_for()
        for size in ({"width": 1400, "height": 1000}, {"width": 390, "height": 844}):
            page.set_viewport_size(size)
            page.wait_for_timeout(700)  # Plotly relayouts on resize
            assert page.evaluate(TITLES_UNDER_BADGES) == [], size
    finally:
        context.close()


def test_a_latency_chart_of_close_variants_still_shows_latency_numbers(pw, tmp_path):
    """Variants timed within a narrow span (0.65–0.75 ms, within one 1-2-5 step of a log
    axis) get numbers on that axis; a wide span keeps the sparse 1-2-5 labels; on a phone
    (390 px) no label overprints another."""
    from studio.charts import decision_scatter

    def tick_labels(latencies: list[float]) -> list[str]:
        rows = [{"variant": f"v{i}", "p50": ms, "kb": 20.0 + 15 * i}
                for i, ms in enumerate(latencies)]
        fig = decision_scatter(rows, x="p50", y="kb", x_title="p50 latency (ms)",
                               y_title="size (KB)", title="Size vs latency")
        html = tmp_path / "chart.html"
        fig.write_html(html, include_plotlyjs=True, full_html=True)
        page.goto(html.as_uri())
        page.locator(".js-plotly-plot text.xtitle").wait_for()  # drawn, ticks or none
        assert overlapping_chart_text(page) == []  # readable on a phone, too
        return page.locator(".js-plotly-plot .xtick text").all_text_contents()

    context = pw.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS,
        viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        close = tick_labels([0.65, 0.69, 0.75])
        assert len([t for t in close if t.strip()]) >= 2, close
        wide = tick_labels([0.05, 0.4, 3.0])
        assert set(wide) <= {"0.05", "0.1", "0.2", "0.5", "1", "2", "5"}, wide
    finally:
        context.close()
