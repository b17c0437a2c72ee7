"""The Quantization tab's weights-range control in a real browser (Debian Chromium, Playwright)."""

from __future__ import annotations

import re

from tests.helpers.browser import MARKS, open_studio

pytestmark = MARKS


def _pick(page, tab, label: str, option: str) -> None:
    tab.get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_weights_range_shows_for_ort_int8_only(studio_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from core.quantization._config import saturates_u8s8

    url, _ = studio_server
    with sync_playwright() as pw:
        context, page = open_studio(pw, tmp_path / "profile", url)
        page.get_by_role("tab", name="Quantization").click()
        tab = page.locator("#quantization-tab")
        weights = tab.get_by_label(re.compile("^Weights range"))
        bits = 7 if saturates_u8s8() else 8
        expect(weights).to_be_visible()
        expect(weights).to_have_value(re.compile(f"^CPU default: {bits}-bit here"))
        _pick(page, tab, "Method", "ort-fp16")
        expect(weights).to_be_hidden()
        _pick(page, tab, "Method", "torch-static-int8")
        expect(weights).to_be_hidden()
        _pick(page, tab, "Method", "ort-dynamic-int8")
        expect(weights).to_be_visible()
        context.close()
