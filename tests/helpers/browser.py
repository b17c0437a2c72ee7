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
