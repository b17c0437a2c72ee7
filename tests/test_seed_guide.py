"""docs/seed-guide.md: every Python example runs as written, in one namespace, in order."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.seed import quick_measurement

ROOT = Path(__file__).resolve().parents[1]


def test_seed_guide_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs/seed-guide.md").read_text(), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    quick_measurement(monkeypatch)
    namespace: dict = {}
    for block in blocks:
        exec(block, namespace)
    assert (tmp_path / "results/fused/report.json").is_file()
    assert (tmp_path / "results/lr/report.json").is_file()
    assert namespace["factorizer"].last_info["layers"][0]["rank"] == 16
    assert len(namespace["compressor"].history) == 2
