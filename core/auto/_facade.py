"""Seed-document facade: ``AutoOptimizer(target_metric=...).optimize_model(model, ...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.runs import RunResult

__all__ = ["AutoOptimizer", "AutoResults", "dataset_from_loaders"]


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


# The seeds' result keys → the auto-optimizer's candidates, first measured one wins.
SEED_KEYS = {"baseline": ("baseline",), "quantized": ("ort-static-int8", "ort-dynamic-int8"),
             "pruned": ("prune50-ft", "prune50-ft-ort", "prune75-ft-ort")}


class AutoResults(RunResult):
    """The auto run's RunResult that also answers ``results['combined']['model']`` (the
    winner), ``['baseline']``, ``['quantized']`` and ``['pruned']`` (measured candidates)."""

    def _row(self, key: str) -> dict[str, Any]:
        info = self.report["auto"]
        rows = {r["name"]: r for r in info["candidates"]}
        names = (info["winner"],) if key in ("combined", "best") else SEED_KEYS.get(key, (key,))
        row = next((rows[n] for n in names if n in rows), None)
        if row is None:
            raise KeyError(f"{key!r}: no such candidate was measured (measured: "
                           f"{sorted(rows)}; 'combined' is the winner)")
        return row

    def __getitem__(self, key: str) -> dict[str, Any]:
        from core.artifacts import load_model

        row = self._row(key)
        run = Path(self.run_dir) / row["run_dir"] if not Path(row["run_dir"]).is_absolute() \
            else Path(row["run_dir"])
        return {"model": load_model(run).model, "name": row["name"], "run_dir": run,
                "metrics": row}


class AutoOptimizer:
    """Forwards to ``core.auto.auto``; ``target_metric`` is speed, size, accuracy or balanced.

    ``device='cuda'`` is refused where torch sees no GPU (one clear message); every variant
    is measured on the CPU either way.
    """

    def __init__(self, target_metric: str = "balanced", tolerance: float = 0.01,
                 device: str = "cpu", **options: Any) -> None:
        from core.auto._config import AutoConfig
        from core.seed_compat import check_device

        self.device = check_device(device)
        self.config = AutoConfig(target=target_metric, tolerance=tolerance, **options)
        self.result: Any = None

    def optimize_model(self, model: Any, train_loader: Any = None, test_loader: Any = None, *,
                       data: Any = None, out_dir: str | Path | None = None,
                       callbacks: Any = None,
                       measure_options: Mapping[str, Any] | None = None) -> Any:
        """Run the auto-optimizer; returns the RunResult (winner in ``result.report``), which
        also answers the seeds' ``results['combined']['model']``."""
        from core.artifacts import new_run_id
        from core.auto._auto import auto

        if data is None and train_loader is not None and test_loader is not None:
            data = dataset_from_loaders(train_loader, test_loader, seed=self.config.seed)
        out = Path(out_dir) if out_dir is not None else Path("results") / new_run_id("auto")
        result = auto(model, data, self.config, out_dir=out, callbacks=callbacks,
                      measure_options=measure_options)
        self.result = AutoResults(result.run_dir, result.report)
        return self.result
