"""The documentation site builds strictly and offline; every page's Python examples run."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Pages whose ```python blocks are executed (the seed guide has its own test).
EXAMPLE_PAGES = ["index.md", *sorted(p.relative_to(ROOT / "docs").as_posix()
                                     for p in (ROOT / "docs/areas").glob("*.md")),
                 "_measurement.md"]


def _quick_measurement(monkeypatch) -> None:
    """Every measurement in the examples short (no memory probe, tiny timing budget)."""
    import core.measure

    full = core.measure.measure_many

    def quick(models, data, **options):
        return full(models, data, **{**options, "budget_s": 0.02, "memory": False})

    monkeypatch.setattr(core.measure, "measure_many", quick)


def _no_network(*_args, **_kwargs):
    raise AssertionError("the docs build tried to open a network connection")


def test_site_builds_strictly_offline_with_generated_pages(tmp_path, monkeypatch):
    pytest.importorskip("mkdocstrings")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.chdir(ROOT)
    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(site), strict=True))

    cli = (site / "cli.html").read_text()
    for verb in ("train", "quantize", "prune", "distill", "tune", "compare", "auto", "scale"):
        assert f"usage: studio {verb}" in cli, verb
    assert "--model-kwargs" in cli and "--json" in cli
    rest = (site / "rest-api.html").read_text()
    assert "/api/jobs/{job_id}/cancel" in rest and (site / "openapi.json").is_file()
    api = (site / "python-api.html").read_text()
    assert 'id="core.quantization.quantize"' in api and 'id="core.pruning.prune"' in api
    assert "Model files are data, never code" in (site / "security.html").read_text()
    assert "interleaved" in (site / "measurement.html").read_text()
    for page in ("index.html", "seed-guide.html", "areas/quantization.html"):
        assert (site / page).is_file(), page
    for page in site.rglob("*.html"):  # offline: no script or stylesheet from elsewhere
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', page.read_text()), \
            page.name


@pytest.mark.parametrize("page", EXAMPLE_PAGES)
def test_page_examples_run(page, tmp_path_factory, monkeypatch):
    """Each page's Python blocks run in order, in one namespace; pages share one folder, and
    a block already run there (the common baseline) is not run again."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    assert blocks, page
    workdir = tmp_path_factory.getbasetemp() / "docs-examples"
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    _quick_measurement(monkeypatch)
    done = _ALREADY_RUN.setdefault(str(workdir), set())
    namespace: dict = {}
    for block in blocks:
        if block in done and "train_baseline(" in block:
            continue
        exec(compile(block, f"docs/{page}", "exec"), namespace)
        done.add(block)


_ALREADY_RUN: dict[str, set[str]] = {}
