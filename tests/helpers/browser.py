"""Shared set-up of the real-browser tests: Debian's Chromium through Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install` (it downloads)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed"),
]


def open_studio(pw, profile_dir: Path, url: str):
    """A Chromium context (downloads accepted) with the studio open and ready; returns both."""
    context = pw.chromium.launch_persistent_context(
        str(profile_dir), executable_path=CHROMIUM, args=FLAGS, accept_downloads=True,
        viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Train baseline").wait_for(timeout=30_000)
    return context, page


def screenshot_dir() -> Path:
    """Where tab screenshots go (a CI artefact): $STUDIO_SCREENSHOTS or test-artifacts/."""
    path = Path(os.environ.get("STUDIO_SCREENSHOTS", "test-artifacts/screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# Pairs of visible Plotly text elements (ticks, titles, legend, bar labels, annotations) whose
# boxes overlap by more than 2 px each way, in the charts under `root` (a CSS selector).
OVERLAP_JS = """(root) => {
  const sel = 'text.xtitle, text.ytitle, text.gtitle, text.legendtext, .xtick text, .ytick text,'
    + ' text.bartext, text.textpoint, .annotation-text, text.annotation-text';
  const out = [];
  for (const plot of document.querySelectorAll(root + ' .js-plotly-plot')) {
    if (!plot.offsetParent) continue;  // a chart in a hidden tab
    const boxes = Array.from(plot.querySelectorAll(sel))
      .filter((el) => (el.textContent || '').trim() && el.getBBox().width > 0)
      .map((el) => ({text: el.textContent.trim(), r: el.getBoundingClientRect()}));
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r, b = boxes[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 2 && h > 2) out.push([boxes[i].text, boxes[j].text]);
      }
    }
  }
  return out;
}"""


def overlapping_chart_text(page, root: str = "body") -> list[list[str]]:
    """Text of the charts under ``root`` that overprints other text (empty when none)."""
    return page.evaluate(OVERLAP_JS, root)
