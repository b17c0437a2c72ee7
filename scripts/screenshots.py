"""Screenshots of every tab at 1440×900 (desktop) and 390×844 (phone) into assets/.

Starts the studio on 127.0.0.1 (a throwaway root), drives Debian's Chromium through
Playwright (never `playwright install`), runs each tab's default action with small settings so
its charts show, and saves `assets/screenshot-<tab>.png` and `assets/screenshot-<tab>-phone.png`.
Prints any chart text that overprints other text and any chart title cut off.
Usage: `.venv/bin/python scripts/screenshots.py [--out DIR]` (default: assets/)
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")

DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}
# (tab label, file stem, element id of its panel, primary button, fields to fill first)
TABS = [
    ("Model & Data", "model-data", None, None, {}),
    ("Quantization", "quantization", "quantization-tab", "Quantize", {}),
    ("Pruning", "pruning", "pruning-tab", "Prune", {}),
    ("Distillation", "distillation", "distillation-tab", "Distil",
     {"Epochs (each student)": "3"}),
    ("Edge", "edge", "edge-tab", "Profile", {}),
    ("Tuning", "tuning", "tuning-tab", "Run study", {"Trials": "4", "Epochs per trial": "2"}),
    ("Comparison", "comparison-all", "comparison-tab", "Re-measure all", {}),
    ("Auto", "auto", "auto-tab", "Optimise", {"Fine-tuning epochs": "1"}),
    ("Deploy", "deploy", "deploy-tab", None, {}),
    ("Jobs", "jobs", "jobs-tab", "Reload jobs list", {}),
    ("Scalability", "scalability", "scalability-tab", "Run",
     {"Client counts (comma-separated)": "4,10"}),
    ("Continual", "continual", "continual-tab", "Run sequence", {}),
]


NO_RUN_STATUS = {"Reload jobs list"}  # buttons that show no running status
RUNNING = "() => Boolean(window.studioRunning && window.studioRunning())"


def serve(root: Path) -> str:
    """The studio in this process on a free port; returns its URL."""
    from studio.app import build_app, launch_kwargs
    from studio.context import StudioContext

    ctx = StudioContext(root, measure_options={"budget_s": 0.05, "memory": False})
    demo = build_app(ctx)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kw = launch_kwargs(ctx, "127.0.0.1", port)
    demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    return f"http://127.0.0.1:{port}/"


def run_tab(page, label: str, panel_id: str | None, button: str | None,
            fields: dict[str, str], timeout_s: float = 600) -> None:
    """Open a tab, run its primary action, wait until its status leaves the running state."""
    page.get_by_role("tab", name=label, exact=True).click()
    if not button:
        return
    panel = page.locator(f"#{panel_id}")
    for name, value in fields.items():
        panel.get_by_label(name).first.fill(value)
    panel.get_by_role("button", name=button, exact=True).first.click()
    deadline = time.monotonic() + timeout_s
    if button not in NO_RUN_STATUS:
        # A queued event shows no status yet: wait for its run to start (a "▶" status), or
        # at most a minute for one that ended between two looks.
        started = time.monotonic() + 60
        while time.monotonic() < started and not page.evaluate(RUNNING):
            page.wait_for_timeout(250)
    page.wait_for_timeout(1500)
    while time.monotonic() < deadline:
        if not page.evaluate(RUNNING):
            break
        page.wait_for_timeout(1000)
    page.wait_for_timeout(1500)  # the last streamed update renders


def main(argv: list[str] | None = None) -> int:
    import argparse

    from playwright.sync_api import sync_playwright

    from tests.helpers.browser import (
        CHROMIUM,
        FLAGS,
        cut_chart_titles,
        overlapping_chart_text,
    )

    parser = argparse.ArgumentParser(description="Screenshots of every tab.")
    parser.add_argument("--out", type=Path, default=ROOT / "assets",
                        help="folder for the PNG files (default: assets/)")
    assets = parser.parse_args(argv).out
    assets.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    url = serve(work / "root")
    problems = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url, wait_until="load")
        page.get_by_role("button", name="Train baseline").wait_for(timeout=60_000)
        page.get_by_label("Epochs").first.fill("5")
        page.get_by_role("button", name="Train baseline").click()
        page.locator("#model_data-status", has_text="Trained").wait_for(timeout=300_000)
        for label, stem, panel_id, button, fields in TABS:
            run_tab(page, label, panel_id, button, fields)
            for size, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
                page.set_viewport_size(size)
                page.wait_for_timeout(800)  # Plotly relayouts on resize
                page.screenshot(path=str(assets / f"screenshot-{stem}{suffix}.png"),
                                full_page=True)
                root = f"#{panel_id}" if panel_id else "body"
                for pair in overlapping_chart_text(page, root):
                    problems += 1
                    print(f"{label}{suffix}: overlapping chart text {pair}")
                for title in cut_chart_titles(page, root):
                    problems += 1
                    print(f"{label}{suffix}: chart title cut {title!r}")
            page.set_viewport_size(DESKTOP)
            print(f"saved {stem}", flush=True)
        browser.close()
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
