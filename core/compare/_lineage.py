"""Lineage: the chain of run folders a variant came from, read from report ``parent`` fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

__all__ = ["find_run", "lineage"]


def _report(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        return None


def find_run(run_id: str, near: Iterable[Path]) -> Path | None:
    """The run folder named ``run_id`` beside (or inside) one of ``near``; None if absent."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        return None
    for folder in near:
        for cand in (folder / run_id, folder.parent / run_id):
            if (cand / "report.json").is_file():
                return cand
    return None


def lineage(run_dir: str | Path, *, search: Iterable[str | Path] = (), max_depth: int = 50
            ) -> list[dict[str, Any]]:
    """``[{run_id, operation, method, config, run_dir, found}]`` from the root to ``run_dir``.

    Parents are looked up beside the run folder (a session keeps its runs side by side) and
    in ``search``; a parent that cannot be found ends the chain with ``found: False``.
    """
    run_dir = Path(run_dir)
    near = [run_dir.parent, *(Path(s) for s in search)]
    chain: list[dict[str, Any]] = []
    current: Path | None = run_dir
    seen: set[str] = set()
    while current is not None and len(chain) < max_depth:
        report = _report(current) or {}
        chain.append({"run_id": current.name, "operation": report.get("operation"),
                      "method": report.get("method"), "config": report.get("config") or {},
                      "data": report.get("data"), "seed": report.get("seed"),
                      "run_dir": str(current), "found": bool(report),
                      "parent": report.get("parent")})
        seen.add(current.name)
        parent = report.get("parent")
        if not parent or parent in seen:
            break
        found = find_run(parent, near)
        if found is None:
            chain.append({"run_id": parent, "operation": None, "method": None, "config": {},
                          "data": None, "seed": None, "run_dir": None, "found": False,
                          "parent": None})
            break
        current = found
    return list(reversed(chain))
