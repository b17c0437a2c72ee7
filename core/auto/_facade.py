"""Seed-document facade: ``AutoOptimizer(target_metric=...).optimize_model(model, ...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["AutoOptimizer", "dataset_from_loaders"]


def _arrays(loader: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for batch in loader:
        x, y = batch[0], batch[1]
        xs.append(np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x,
                             dtype=np.float32))
        ys.append(np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y,
                             dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def dataset_from_loaders(train_loader: Any, test_loader: Any, *, val_fraction: float = 0.15,
                         seed: int = 0) -> Any:
    """A studio Dataset from two DataLoaders (a validation slice is cut from train)."""
    from core.data import Dataset
    from core.data._dataset import DataSpec

    X, y = _arrays(train_loader)
    X_test, y_test = _arrays(test_loader)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = int(round(len(y) * val_fraction))
    val, tr = order[:n_val], order[n_val:]
    classes = [str(c) for c in range(int(max(y.max(), y_test.max())) + 1)]
    return Dataset("loaders", X[tr], y[tr], X[val], y[val], X_test, y_test, classes, {},
                   DataSpec(source="loaders", seed=seed))


class AutoOptimizer:
    """Forwards to ``core.auto.auto``; ``target_metric`` is speed, size, accuracy or balanced."""

    def __init__(self, target_metric: str = "balanced", tolerance: float = 0.01,
                 **options: Any) -> None:
        from core.auto._config import AutoConfig

        self.config = AutoConfig(target=target_metric, tolerance=tolerance, **options)
        self.result: Any = None

    def optimize_model(self, model: Any, train_loader: Any = None, test_loader: Any = None, *,
                       data: Any = None, out_dir: str | Path | None = None,
                       callbacks: Any = None,
                       measure_options: Mapping[str, Any] | None = None) -> Any:
        """Run the auto-optimizer; returns the RunResult (winner in ``result.report``)."""
        from core.artifacts import new_run_id
        from core.auto._auto import auto

        if data is None and train_loader is not None and test_loader is not None:
            data = dataset_from_loaders(train_loader, test_loader, seed=self.config.seed)
        out = Path(out_dir) if out_dir is not None else Path("results") / new_run_id("auto")
        self.result = auto(model, data, self.config, out_dir=out, callbacks=callbacks,
                           measure_options=measure_options)
        return self.result
