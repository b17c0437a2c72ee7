"""Real-browser flows: Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from tests.helpers.browser import (
    MARKS,
    cut_chart_titles,
    error_pill_covers,
    open_studio,
    overlapping_chart_text,
    screenshot_dir,
)

pytestmark = MARKS


@pytest.fixture(scope="module")
def pw():
    """One Playwright per module: its sync API cannot be started twice in one thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def page(pw, studio_server, tmp_path_factory):
    url, _ = studio_server
    context, page = open_studio(pw, tmp_path_factory.mktemp("chromium-profile"), url)
    yield page
    context.close()


def test_train_compare_and_download_in_a_browser(page, tmp_path):
    from core.data import load_dataset

    page.get_by_role("button", name="Train baseline").click()
    page.locator("strong", has_text="Trained").first.wait_for(timeout=120_000)
    page.screenshot(path=str(screenshot_dir() / "model_data.png"), full_page=True)

    page.get_by_role("tab", name="Comparison").click()
    page.get_by_role("button", name="Refresh").click()
    page.locator("#comparison-tab").get_by_text("train-").filter(visible=True).first.wait_for(
        timeout=30_000)
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Prepare bundle (.zip)").click()
        link = page.locator("#comparison-tab a[download]").first
        link.wait_for(timeout=30_000)
        link.click()
    page.screenshot(path=str(screenshot_dir() / "comparison.png"), full_page=True)
    target = tmp_path / "bundle.zip"
    info.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        zf.extract("model.onnx", tmp_path)
        report = __import__("json").loads(zf.read("report.json"))
    import onnxruntime as ort

    data = load_dataset("digits")
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    acc = float((sess.run(None, {"input": data.X_test})[0].argmax(1) == data.y_test).mean())
    assert acc == pytest.approx(report["result"]["accuracy"], abs=1e-6)


def _reports(root: Path, operation: str) -> int:
    """Count finished runs of `operation`; staging folders may vanish mid-walk (os.walk skips)."""
    import json
    import os

    count = 0
    for folder, _, files in os.walk(root):
        if "report.json" not in files or folder.endswith(".partial"):
            continue
        try:
            report = json.loads((Path(folder) / "report.json").read_text())
        except (OSError, ValueError):
            continue
        count += report.get("operation") == operation
    return count


def _wait_for_run(root: Path, operation: str, before: int, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while _reports(root, operation) <= before:
        assert time.monotonic() < deadline, f"no new '{operation}' run within {timeout_s} s"
        time.sleep(0.5)


def _wait_until_shown(page, root: str) -> None:
    """Wait until no run status under ``root`` says running (▶): the run's last update, with
    its final charts, has reached the page (its report on disk comes before that)."""
    page.wait_for_function(
        """(root) => !Array.from(document.querySelectorAll(root + ' .run-status'))
             .some((el) => (el.innerText || '').trim().startsWith('\\u25b6'))""",
        arg=root, timeout=120_000)


# (tab label, elem_id, primary button, operation it writes, fields to set first)
TAB_ACTIONS = [
    ("Quantization", "quantization-tab", "Quantize", "quantize", {}),
    ("Pruning", "pruning-tab", "Prune", "prune", {}),
    ("Distillation", "distillation-tab", "Distil", "distill", {}),
    ("Tuning", "tuning-tab", "Run study", "tune", {"Trials": "3", "Epochs per trial": "1"}),
    ("Scalability", "scalability-tab", "Run", "scale",
     {"Client counts (comma-separated)": "4,10"}),
]


def test_each_tab_default_action(page, studio_server):
    """Run every tab's default action in the browser, wait for its charts, screenshot it."""
    _, ctx = studio_server
    for label, elem_id, button, operation, fields in TAB_ACTIONS:
        page.get_by_role("tab", name=label).click()
        panel = page.locator(f"#{elem_id}")
        for name, value in fields.items():
            panel.get_by_label(name, exact=True).first.fill(value)
        before = _reports(ctx.root, operation)
        panel.get_by_role("button", name=button, exact=True).click()
        _wait_for_run(ctx.root, operation, before, timeout_s=240)
        _wait_until_shown(page, f"#{elem_id}")
        panel.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # let the last streamed update render
        page.screenshot(path=str(screenshot_dir() / f"{elem_id.removesuffix('-tab')}.png"),
                        full_page=True)
        _no_overlapping_chart_text(page, f"#{elem_id}")
        if operation == "prune":
            _pruning_labels_match_the_layers(page, ctx.root)
    page.get_by_role("tab", name="Comparison").click()
    before = _reports(ctx.root, "compare")
    page.locator("#comparison-tab").get_by_role("button", name="Re-measure all").click()
    _wait_for_run(ctx.root, "compare", before, timeout_s=240)
    _wait_until_shown(page, "#comparison-tab")
    page.locator("#comparison-tab .js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(screenshot_dir() / "comparison-all.png"), full_page=True)
    _no_overlapping_chart_text(page, "#comparison-tab")

    page.get_by_role("tab", name="Auto").click()
    auto = page.locator("#auto-tab")
    auto.get_by_label("ort-fp32").check()  # one quick candidate: the charts, not the search
    auto.get_by_role("button", name="Optimise").click()
    auto.get_by_text("Why the others lost").wait_for(timeout=240_000)
    auto.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _no_overlapping_chart_text(page, "#auto-tab")


def _no_overlapping_chart_text(page, root: str) -> None:
    """No chart text overprints other text and every chart title fits its chart, on a
    desktop (1440×900) and a phone (390×844)."""
    for size in ({"width": 1440, "height": 900}, {"width": 390, "height": 844}):
        page.set_viewport_size(size)
        page.wait_for_timeout(700)  # Plotly relayouts on resize
        assert overlapping_chart_text(page, root) == [], (root, size)
        assert cut_chart_titles(page, root) == [], (root, size)
    page.set_viewport_size({"width": 1400, "height": 1000})


def _pruning_labels_match_the_layers(page, root: Path) -> None:
    """The pruning chart's bar labels are the newest prune run's layer widths (before→after)."""
    import json

    newest = max(root.rglob("prune-*/report.json"), key=lambda p: p.stat().st_mtime)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    layers = json.loads(newest.read_text())["pruning"]["layers"]
    wanted = [f"{r['width_before']}→{r['width_after']}" for r in layers]
    labels = """() => Array.from(document.querySelectorAll(
        '#pruning-tab .js-plotly-plot text.bartext')).map((el) => el.textContent.trim())"""
    try:  # Plotly draws the chart a moment after the update that carries it
        page.wait_for_function(f"(wanted) => JSON.stringify(({labels})()) === "
                               "JSON.stringify(wanted)", arg=wanted, timeout=30_000)
    except PlaywrightTimeout:
        pass  # the assertion below says what was shown instead
    assert page.evaluate(labels) == wanted


def test_workspace_survives_reload_and_restart_but_not_another_browser(pw, studio_server,
                                                                        tmp_path):
    """F5 and a browser restart find the same workspace; another browser starts empty; the
    key lives in localStorage, never in the URL; "New workspace" starts an empty one."""
    from playwright.sync_api import expect

    url, _ = studio_server
    bar = "#current-model"
    context, page = open_studio(pw, tmp_path / "profile", url)
    page.get_by_label("Epochs").first.fill("2")
    page.get_by_role("button", name="Train baseline").click()
    page.locator("strong", has_text="Trained").first.wait_for(timeout=120_000)
    expect(page.locator(bar + " input")).to_have_value(re.compile("CNN on digits"),
                                                       timeout=30_000)
    stored = page.evaluate("() => JSON.stringify(Object.assign({}, localStorage))")
    assert "optimization-studio-workspace" in stored and "ws1-" not in page.url

    page.reload(wait_until="load")
    expect(page.get_by_text("Current model:")).to_be_visible(timeout=30_000)
    expect(page.locator(bar + " input")).to_have_value(re.compile("CNN on digits"),
                                                       timeout=30_000)
    context.close()

    context, page = open_studio(pw, tmp_path / "profile", url)  # browser restart
    expect(page.locator(bar + " input")).to_have_value(re.compile("CNN on digits"),
                                                       timeout=30_000)
    page.get_by_role("tab", name="Quantization").click()
    expect(page.locator("#quantization-tab input").first).to_have_value(
        re.compile("CNN on digits"), timeout=30_000)

    other, other_page = open_studio(pw, tmp_path / "other-profile", url)
    expect(other_page.get_by_text("No model yet")).to_be_visible(timeout=30_000)
    expect(other_page.locator(bar + " input")).to_have_value("", timeout=10_000)
    other.close()

    page.get_by_text("Workspace", exact=True).click()
    page.get_by_role("button", name="New workspace").click()
    expect(page.get_by_text("No model yet")).to_be_visible(timeout=30_000)
    context.close()


def test_a_running_job_guards_the_page(pw, studio_server, tmp_path):
    """While a run goes, leaving the page asks first (beforeunload); idle, it does not."""
    from playwright.sync_api import expect

    url, ctx = studio_server
    context, page = open_studio(pw, tmp_path / "profile", url)
    assert page.evaluate("() => window.studioRunning()") is False
    _choose_slow_data(page, tmp_path)  # still running when the page is closed below
    page.get_by_label("Epochs").first.fill("100")
    page.get_by_role("button", name="Train baseline").click()
    expect(page.locator("#model_data-status")).to_contain_text("Epoch", timeout=90_000)
    assert page.evaluate("() => window.studioRunning()") is True
    asked = []

    def on_dialog(dialog):
        asked.append(dialog.type)
        dialog.dismiss()  # stay on the page

    page.on("dialog", on_dialog)
    with page.expect_event("dialog", timeout=60_000):  # it comes asynchronously
        page.close(run_before_unload=True)
    assert asked == ["beforeunload"] and not page.is_closed()
    context.close()
    _stop_running_jobs(ctx, "train")  # closing stops it too: ended before the next test


def _stop_running_jobs(ctx, kind: str) -> None:
    """Cancel the server's running jobs of ``kind`` and wait until they have ended."""
    import time

    from studio.tabs.jobs import manager

    mgr = manager(ctx)
    for job in mgr.store.list(status="running"):
        if job.kind == kind:
            mgr.cancel(job.id, job.owner)
    end = time.monotonic() + 60  # bounds a hang only
    while any(j.kind == kind for j in mgr.store.list(status="running")):
        assert time.monotonic() < end, f"a cancelled '{kind}' job is still running"
        time.sleep(0.2)


def _choose_slow_data(page, tmp_path: Path) -> None:
    """Upload slow_npz's 20,000 rows in Model & Data: 100 epochs outlast the test's waits."""
    from playwright.sync_api import expect

    from tests.helpers.rest import slow_npz

    slow = slow_npz(tmp_path / "slow.npz")
    page.get_by_text("Your own data or model").click()
    page.locator("#model_data-data-file input[type=file]").set_input_files(str(slow))
    expect(page.locator("#model_data-data-file")).to_contain_text("slow.npz")


def test_stop_in_the_browser_stops_the_run_and_keeps_the_baseline(pw, studio_server, tmp_path):
    """Stop reaches the server while Model & Data streams: the status says "Stopped", the job
    is cancelled, no run is written and the previous baseline's figures stay."""
    from playwright.sync_api import expect

    url, ctx = studio_server
    context, page = open_studio(pw, tmp_path / "profile", url)
    status = page.locator("#model_data-status")
    page.get_by_label("Epochs").first.fill("1")
    page.get_by_role("button", name="Train baseline").click()
    expect(status).to_contain_text("Trained", timeout=120_000)
    baseline = re.search(r"train-[0-9a-f-]+", status.inner_text()).group(0)
    mine = next(ctx.root.glob(f"sessions/*/{baseline}")).parent  # not other tests' sessions
    before = _reports(mine, "train")

    _choose_slow_data(page, tmp_path)  # still running when Stop is pressed below
    page.get_by_label("Epochs").first.fill("100")
    page.get_by_role("button", name="Train baseline").click()
    expect(status).to_contain_text("Epoch", timeout=90_000)
    page.wait_for_timeout(6000)  # past the server's keep-alive timeout (the original hang)
    page.get_by_role("button", name="Stop", exact=True).first.click()
    expect(status).to_contain_text("Stopped", timeout=30_000)
    expect(status).to_contain_text(baseline)  # the previous baseline's figures are back
    expect(page.locator("#model_data-figures")).to_contain_text(baseline)
    expect(page.locator("#current-model input")).to_have_value(re.compile("CNN on digits"))
    from studio.tabs.jobs import manager

    store = manager(ctx).store
    for _ in range(120):  # the job ends within the grace period (10 s); this bounds a hang
        if not [j for j in store.list(status="running") if j.kind == "train"]:
            break
        page.wait_for_timeout(500)
    newest = next(j for j in store.list(limit=20) if j.kind == "train")
    assert newest.status == "cancelled"
    assert _reports(mine, "train") == before
    context.close()


def test_the_error_pill_leaves_the_status_readable(pw, studio_server, tmp_path):
    """A failed action marks its status "Error" without drawing over the status's text, on a
    desktop and a phone."""
    url, _ = studio_server
    context, page = open_studio(pw, tmp_path / "profile", url)
    page.get_by_role("tab", name="Tuning").click()
    panel = page.locator("#tuning-tab")
    panel.get_by_label("Trials", exact=True).first.fill("0")  # below the minimum: an error
    panel.get_by_role("button", name="Run study", exact=True).click()
    pill = panel.locator(".run-status span.error").first
    pill.wait_for(timeout=30_000)
    for size in ({"width": 1440, "height": 900}, {"width": 390, "height": 844}):
        page.set_viewport_size(size)
        page.wait_for_timeout(500)
        assert pill.is_visible()
        assert error_pill_covers(page, "#tuning-tab") == [], size
    context.close()


def test_an_onnx_model_with_its_data_file_is_measured_in_a_browser(pw, studio_server, tmp_path,
                                                                   digits):
    """The .onnx in the model slot and its .onnx.data in the slot under it: measured."""
    import torch
    from playwright.sync_api import expect

    from tests.helpers import onnx_zoo

    url, _ = studio_server
    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=2)
    graph = onnx_zoo.export_default(net, tmp_path / "model.onnx",
                                    torch.from_numpy(digits.X_test[:1]))
    context, page = open_studio(pw, tmp_path / "profile", url)
    page.get_by_text("Your own data or model").click()
    page.locator("#model_data-model-file input[type=file]").set_input_files(str(graph))
    page.locator("#model_data-model-weights input[type=file]").set_input_files(
        str(tmp_path / "model.onnx.data"))
    page.get_by_role("button", name="Measure uploaded model").click()
    expect(page.locator("#model_data-status")).to_contain_text("Measured", timeout=120_000)
    context.close()
