"""The README's Python examples run as written (in a fresh folder with a trained runs/base)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_examples_run(tmp_path, monkeypatch):
    from core.runs import train_baseline
    from core.training import TrainConfig

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    train_baseline("cnn", "digits", out_dir=Path("runs/base"), config=TrainConfig(epochs=3),
                   measure_options={"budget_s": 0.02, "memory": False})
    for block in blocks:
        # Shorter training than the README's: the point is that the code runs.
        exec(block.replace("epochs=10", "epochs=2"), {})
    assert (tmp_path / "runs/p/report.json").is_file()
    assert (tmp_path / "runs/student/report.json").is_file()
    assert (tmp_path / "small.zip").is_file()
