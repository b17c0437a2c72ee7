"""Continual-learning figures from the accuracy matrix.

``R[i][j]`` is the test accuracy on task ``j`` after training task ``i`` (0-based, ``j <= i``;
entries above the diagonal are None). Definitions (Lopez-Paz & Ranzato 2017, GEM; Chaudhry et
al. 2018, RWalk), after the last task ``T-1``:

- average accuracy ``A = mean_j R[T-1][j]``;
- backward transfer ``BWT = mean_{j<T-1} (R[T-1][j] - R[j][j])`` (negative: forgetting);
- forgetting ``F = mean_{j<T-1} (max_{l in [j, T-2]} R[l][j] - R[T-1][j])``.

With one task BWT and forgetting are undefined (None).
"""

from __future__ import annotations

from typing import Sequence

Matrix = Sequence[Sequence[float | None]]

__all__ = ["average_accuracy", "backward_transfer", "forgetting", "summarize"]


def _check(matrix: Matrix) -> int:
    from core.errors import InvalidParameterError

    for i, row in enumerate(matrix):
        if len(row) < i + 1 or any(row[j] is None for j in range(i + 1)):
            raise InvalidParameterError("accuracy matrix", f"row {i} filled for tasks 0..{i}",
                                        list(row))
    return len(matrix)


def average_accuracy(matrix: Matrix) -> float:
    """Mean accuracy over every task seen, after the last task."""
    T = _check(matrix)
    return sum(matrix[T - 1][j] for j in range(T)) / T


def backward_transfer(matrix: Matrix) -> float | None:
    """How training later tasks changed the earlier ones (negative = forgotten)."""
    T = _check(matrix)
    if T < 2:
        return None
    return sum(matrix[T - 1][j] - matrix[j][j] for j in range(T - 1)) / (T - 1)


def forgetting(matrix: Matrix) -> float | None:
    """Mean drop of each earlier task from its best accuracy to its last (≥ 0 unless noise)."""
    T = _check(matrix)
    if T < 2:
        return None
    drops = [max(matrix[step][j] for step in range(j, T - 1)) - matrix[T - 1][j]
             for j in range(T - 1)]
    return sum(drops) / (T - 1)


def summarize(matrix: Matrix) -> dict[str, float | None]:
    """Average accuracy, forgetting and backward transfer after the last row."""
    return {"average_accuracy": average_accuracy(matrix), "forgetting": forgetting(matrix),
            "backward_transfer": backward_transfer(matrix)}
