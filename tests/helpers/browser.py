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


def _patient_expect() -> None:
    """expect(...) waits up to 30 s (Playwright's 5 s default is short on a loaded 2-core
    machine: a chained event or a chart can take longer to arrive); it only bounds a hang."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)


def open_studio(pw, profile_dir: Path, url: str):
    """A Chromium context (downloads accepted) with the studio open and ready; returns both."""
    _patient_expect()
    context = pw.chromium.launch_persistent_context(
        str(profile_dir), executable_path=CHROMIUM, args=FLAGS, accept_downloads=True,
        viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("button", name="Train baseline").wait_for(timeout=60_000)
    # The page's own script (the leave guard) is installed by a load event that may come
    # after the buttons are drawn: ready means both.
    page.wait_for_function("() => typeof window.studioRunning === 'function'", timeout=60_000)
    return context, page


def screenshot_dir() -> Path:
    """Where tab screenshots go (a CI artefact): $STUDIO_SCREENSHOTS or test-artifacts/."""
    path = Path(os.environ.get("STUDIO_SCREENSHOTS", "test-artifacts/screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# Pairs of visible Plotly text elements (ticks, titles, legend, bar labels, annotations) whose
# drawn boxes overlap by more than 2 px, in the charts under `root` (a CSS selector). A box is
# the text's own box turned as the text is (rotated tick labels), compared by separating axes.
OVERLAP_JS = """(root) => {
  const sel = 'text.xtitle, text.ytitle, text.gtitle, text.legendtext, .xtick text, .ytick text,'
    + ' text.bartext, text.textpoint, .annotation-text';
  const corners = (el) => {
    const b = el.getBBox(), m = el.getScreenCTM();
    return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
            [b.x, b.y + b.height]].map(([x, y]) => [m.a * x + m.c * y + m.e,
                                                     m.b * x + m.d * y + m.f]);
  };
  const apart = (p, q) => {  // a separating axis with a gap or an overlap under 2 px
    for (const poly of [p, q]) {
      for (let i = 0; i < 4; i++) {
        const [x1, y1] = poly[i], [x2, y2] = poly[(i + 1) % 4];
        const len = Math.hypot(x2 - x1, y2 - y1) || 1;
        const nx = -(y2 - y1) / len, ny = (x2 - x1) / len;
        const pr = (pts) => pts.map(([x, y]) => x * nx + y * ny);
        const a = pr(p), b = pr(q);
        const overlap = Math.min(Math.max(...a), Math.max(...b))
          - Math.max(Math.min(...a), Math.min(...b));
        if (overlap <= 2) return true;
      }
    }
    return false;
  };
  const out = [];
  for (const plot of document.querySelectorAll(root + ' .js-plotly-plot')) {
    if (!plot.offsetParent) continue;  // a chart in a hidden tab
    const boxes = Array.from(plot.querySelectorAll(sel))
      .filter((el) => (el.textContent || '').trim() && el.getBBox().width > 0
              && getComputedStyle(el).visibility !== 'hidden'
              && getComputedStyle(el).opacity !== '0')
      .map((el) => ({text: el.textContent.trim(), c: corners(el)}));
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        if (!apart(boxes[i].c, boxes[j].c)) out.push([boxes[i].text, boxes[j].text]);
      }
    }
  }
  return out;
}"""


def overlapping_chart_text(page, root: str = "body") -> list[list[str]]:
    """Text of the charts under ``root`` that overprints other text (empty when none)."""
    return page.evaluate(OVERLAP_JS, root)


# Chart titles wider than their chart (cut off by the page: "red = Pareto fr" on a phone).
CUT_TITLES_JS = """(root) => {
  const out = [];
  for (const plot of document.querySelectorAll(root + ' .js-plotly-plot')) {
    if (!plot.offsetParent) continue;
    const svg = plot.querySelector('svg.main-svg');
    const title = plot.querySelector('text.gtitle');
    if (!svg || !title || !title.textContent.trim()) continue;
    const box = svg.getBoundingClientRect(), t = title.getBoundingClientRect();
    if (t.left < box.left - 1 || t.right > box.right + 1) out.push(title.textContent);
  }
  return out;
}"""


def cut_chart_titles(page, root: str = "body") -> list[str]:
    """Titles of the charts under ``root`` that do not fit their chart (empty when none)."""
    return page.evaluate(CUT_TITLES_JS, root)


# A status's "Error" pill drawn over the status's own text (its headline).
COVERED_JS = """(root) => {
  const out = [];
  for (const block of document.querySelectorAll(root + ' .block.run-status')) {
    const pill = block.querySelector('span.error');
    if (!pill || !pill.offsetParent) continue;
    const p = pill.getBoundingClientRect();
    for (const el of block.querySelectorAll('.md > *')) {
      const r = el.getBoundingClientRect();
      const apart = r.right <= p.left || p.right <= r.left || r.bottom <= p.top
        || p.bottom <= r.top;
      if (!apart) out.push(el.textContent.trim().slice(0, 80));
    }
  }
  return out;
}"""


def error_pill_covers(page, root: str = "body") -> list[str]:
    """Status text under ``root`` that an "Error" pill is drawn over (empty when none)."""
    return page.evaluate(COVERED_JS, root)
