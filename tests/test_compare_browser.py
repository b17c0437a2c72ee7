"""Real-browser flow over the Comparison, Auto and Jobs tabs (Debian Chromium, Playwright)."""

from __future__ import annotations

import re

from tests.helpers.browser import MARKS, open_studio, screenshot_dir

pytestmark = MARKS


def test_remeasure_auto_and_jobs_in_a_browser(studio_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, _ = studio_server
    with sync_playwright() as pw:
        context, page = open_studio(pw, tmp_path / "profile", url)
        page.get_by_label("Epochs").first.fill("2")
        page.get_by_role("button", name="Train baseline").click()
        page.locator("strong", has_text="Trained").first.wait_for(timeout=120_000)

        page.get_by_role("tab", name="Comparison").click()
        page.get_by_role("button", name="Re-measure all").click()
        tab = page.locator("#comparison-tab")
        tab.get_by_text("Re-measured").first.wait_for(timeout=120_000)
        page.screenshot(path=str(screenshot_dir() / "comparison_remeasured.png"), full_page=True)
        expect(tab.locator(".js-plotly-plot").first).to_be_visible()
        expect(tab).to_contain_text(re.compile(r"report\s*\.html"))
        expect(tab).to_contain_text(re.compile(r"comparison\s*\.csv"))

        page.get_by_role("tab", name="Auto").click()
        auto = page.locator("#auto-tab")
        auto.get_by_label("ort-fp32").check()
        auto.get_by_role("button", name="Optimise").click()
        auto.get_by_text("Why the others lost").wait_for(timeout=180_000)
        expect(auto.get_by_text("ort-fp32").first).to_be_visible()
        page.screenshot(path=str(screenshot_dir() / "auto.png"), full_page=True)

        page.get_by_role("tab", name="Jobs").click()
        page.get_by_role("button", name="Reload jobs list").click()
        jobs = page.locator("#jobs-tab")
        expect(jobs).to_contain_text("succeeded", timeout=30_000)
        expect(jobs).to_contain_text("auto")
        expect(jobs).to_contain_text("compare")
        page.screenshot(path=str(screenshot_dir() / "jobs.png"), full_page=True)
        context.close()
