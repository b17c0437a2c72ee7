"""Pareto front: the variants no other variant beats on every objective at once."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["dominates", "pareto_front"]

Objective = tuple[str, str]  # (key, "min" | "max")


def _value(row: Mapping[str, Any], key: str, sense: str) -> float | None:
    v = row.get(key)
    if v is None or not isinstance(v, (int, float)) or v != v:
        return None
    return float(v) if sense == "min" else -float(v)


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Sequence[Objective]
              ) -> bool:
    """True if ``a`` is at least as good as ``b`` on every objective and better on one."""
    better = False
    for key, sense in objectives:
        va, vb = _value(a, key, sense), _value(b, key, sense)
        if va is None or vb is None:
            return False
        if va > vb:
            return False
        if va < vb:
            better = True
    return better


def pareto_front(rows: Sequence[Mapping[str, Any]],
                 objectives: Sequence[Objective] = (("size_bytes", "min"), ("p50_b64", "min"),
                                                    ("accuracy", "max"))) -> list[int]:
    """Indices (in input order) of the rows that no other row dominates.

    Rows missing a figure for an objective are never on the front. Exact duplicates are
    all kept (neither dominates the other).
    """
    for key, sense in objectives:
        if sense not in ("min", "max"):
            raise ValueError(f"objective sense for {key!r} must be 'min' or 'max'")
    usable = [i for i, r in enumerate(rows)
              if all(_value(r, k, s) is not None for k, s in objectives)]
    return [i for i in usable
            if not any(dominates(rows[j], rows[i], objectives) for j in usable if j != i)]
