"""The continual trainer: experience replay, per-task pruning/quantization, the accuracy
matrix, and each task's deployed artifact (measured under the studio's protocol)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.callbacks import Callbacks
from core.continual._config import ContinualConfig
from core.continual._metrics import summarize
from core.continual._tasks import merge_tasks
from core.data import Dataset
from core.errors import InvalidParameterError, StudioError

__all__ = ["ContinualTrainer", "ReplayBuffer"]


class ReplayBuffer:
    """Experience replay by reservoir sampling (Vitter's algorithm R): after ``n`` rows every
    row has had the same chance ``size / n`` to be kept, whatever task it came from."""

    def __init__(self, size: int, *, seed: int = 0) -> None:
        self.size, self.seen = int(size), 0
        self._rng = np.random.default_rng(seed)
        self._X: np.ndarray | None = None
        self._y: np.ndarray | None = None

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.size == 0:
            self.seen += len(y)
            return
        if self._X is None:
            self._X = np.empty((self.size, *X.shape[1:]), dtype=X.dtype)
            self._y = np.empty(self.size, dtype=y.dtype)
        for i in range(len(y)):  # a loop over rows: the algorithm is sequential
            slot = self.seen if self.seen < self.size else int(self._rng.integers(self.seen + 1))
            if slot < self.size:
                self._X[slot], self._y[slot] = X[i], y[i]
            self.seen += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not len(self) or self._X is None or self._y is None:
            return None
        return self._X[:len(self)].copy(), self._y[:len(self)].copy()

    def counts(self) -> dict[str, int]:
        """Rows kept per class label."""
        got = self.arrays()
        if got is None:
            return {}
        labels, n = np.unique(got[1], return_counts=True)
        return {str(int(k)): int(v) for k, v in zip(labels, n)}


def _accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    from core.measure import predict_logits

    return float((predict_logits(model, X).argmax(axis=1) == y).mean()) if len(y) else 0.0


class ContinualTrainer:
    """Learns tasks one after another (``train_task``); after each it prunes (optional), saves
    the deployable artifact (ONNX, or the quantize verb's run folder) in ``workdir/task_<k>``
    and scores that artifact on every task seen so far (one row of the accuracy matrix)."""

    def __init__(self, model: Any, config: ContinualConfig, *, workdir: str | Path,
                 n_tasks: int | None = None, threads: int = 1) -> None:
        from core.measure import torch_param_counts

        self.model, self.cfg = model, config
        self.workdir = Path(workdir)
        self.n_tasks = n_tasks or config.task_count
        self.threads = threads
        self.buffer = ReplayBuffer(config.replay_size, seed=config.seed)
        self.tasks: list[Dataset] = []
        self.names: list[str] = []
        self.matrix: list[list[float | None]] = []
        self.rows: list[dict[str, Any]] = []
        self.deployed: dict[str, tuple[Any, list[Path]]] = {}
        self.warnings: list[str] = []
        self._pruner: Any = None
        self._after_step: Any = None
        self.params_start = torch_param_counts(model)

    # --- one task --------------------------------------------------------------------------
    def train_task(self, task: Dataset, *, name: str | None = None, epochs: int | None = None,
                   lr: float | None = None, callbacks: Callbacks | None = None
                   ) -> dict[str, Any]:
        """Train on ``task`` (plus the replay buffer), prune/quantize, score every task seen."""
        from core.measure import torch_param_counts

        cb = Callbacks.ensure(callbacks)
        self._check_task(task)
        k = len(self.tasks) + 1
        self.tasks.append(task)
        self.names.append(name or f"task {k}")
        replay = self.buffer.arrays()
        train_rows = (task.X_train, task.y_train) if replay is None else (
            np.concatenate([task.X_train, replay[0]]), np.concatenate([task.y_train, replay[1]]))
        seen = merge_tasks(self.tasks, train=train_rows, name=f"tasks 1-{k}")
        seconds = self._fit(seen, k, epochs, lr,
                            cb.sub(0.0, 0.6, f"Task {k}: ", metrics=False))
        sparsity = self._prune(k, seen,
                               cb.sub(0.6, 0.8, f"Task {k}: pruning — ", metrics=False))
        self.buffer.add(task.X_train, task.y_train)
        cb.progress(0.8, f"Task {k}: saving its artifact")
        deployed, files = self._deploy(k, seen,
                                       cb.sub(0.8, 0.95, f"Task {k}: ", metrics=False))
        self.deployed[f"task_{k}"] = (deployed, files)
        row = [_accuracy(deployed, t.X_test, t.y_test) for t in self.tasks]
        self.matrix.append(row + [None] * (self.n_tasks - len(row)))
        params, nonzero = torch_param_counts(self.model)
        entry = {"task": k, "name": self.names[-1], "train_rows": len(task.y_train),
                 "replay_rows": 0 if replay is None else len(replay[1]),
                 "train_seconds": seconds, "sparsity_target": sparsity, "params": params,
                 "nonzero_params": nonzero, "accuracy": row, "artifact_bytes":
                 sum(f.stat().st_size for f in files), **summarize(self._square())}
        self.rows.append(entry)
        cb.metrics({"task": k, "average_accuracy": entry["average_accuracy"]})
        return entry

    def _check_task(self, task: Dataset) -> None:
        if not isinstance(task, Dataset):
            raise InvalidParameterError("task", "a core.data Dataset", type(task).__name__)
        if self.tasks and (task.input_shape != self.tasks[0].input_shape
                           or task.class_names != self.tasks[0].class_names):
            raise InvalidParameterError("task", f"inputs {list(self.tasks[0].input_shape)} and "
                                        f"the same {self.tasks[0].num_classes} classes as task 1",
                                        f"inputs {list(task.input_shape)}, "
                                        f"{task.num_classes} classes")

    def _square(self) -> list[list[float | None]]:
        return [row[:len(self.matrix)] for row in self.matrix]

    def _fit(self, seen: Dataset, k: int, epochs: int | None, lr: float | None,
             cb: Callbacks) -> float:
        from core.training import TrainConfig, train

        cfg = self.cfg
        tc = TrainConfig(epochs=epochs or cfg.epochs, lr=lr or cfg.lr,
                         batch_size=cfg.batch_size, optimizer=cfg.optimizer, seed=cfg.seed + k)
        for p in self.model.parameters():
            p.requires_grad_(True)
        return train(self.model, seen, tc, callbacks=cb, after_step=self._after_step).seconds

    # --- per-task optimization --------------------------------------------------------------
    def _prune(self, k: int, seen: Dataset, cb: Callbacks) -> float | None:
        """Grow the sparsity to this task's step of the cubic schedule, then fine-tune."""
        from core.pruning import PruningConfig, cubic_schedule
        from core.training import TrainConfig, finetune

        cfg = self.cfg
        if cfg.prune is None or k > self.n_tasks:
            return None
        steps = max(self.n_tasks, 2)
        targets = cubic_schedule(cfg.sparsity, steps)[1:]
        pcfg = PruningConfig(method=cfg.prune, sparsity=cfg.sparsity, schedule="gradual",
                             steps=steps, seed=cfg.seed)
        if self._pruner is None:
            self._pruner = self._make_pruner(pcfg, seen)
        if pcfg.structured:
            self._pruner.step(seen)
        else:
            self._pruner.prune_to(targets[k - 1])
            self._after_step = self._pruner.after_step()
        tc = None
        if cfg.finetune_epochs:
            tc = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                             optimizer=cfg.optimizer, seed=cfg.seed + 100 + k)
        finetune(self.model, seen, tc, after_step=self._after_step, callbacks=cb)
        return float(targets[k - 1])

    def _make_pruner(self, pcfg: Any, seen: Dataset) -> Any:
        import torch

        from core.pruning._structured import StructuredPruner
        from core.pruning._unstructured import MaskedPruner

        if pcfg.structured:
            return StructuredPruner(self.model, torch.from_numpy(seen.X_train[:2]), pcfg)
        return MaskedPruner(self.model, pcfg, seen)

    def _deploy(self, k: int, seen: Dataset, cb: Callbacks) -> tuple[Any, list[Path]]:
        """This task's deployable artifact, loaded back: the quantize verb's output, or the
        model exported to ONNX."""
        import torch

        from core.artifacts import export_onnx
        from core.artifacts._onnx import onnx_files
        from core.measure import ort_session

        folder = self.workdir / f"task_{k}"
        self.model.eval()
        if self.cfg.quantize:
            return self._quantized(folder, seen, cb)
        folder.mkdir(parents=True, exist_ok=True)
        export_onnx(self.model, folder / "model.onnx", torch.from_numpy(seen.X_test[:1]),
                    check_inputs=seen.X_test[:64])
        return ort_session(folder / "model.onnx", threads=self.threads), \
            onnx_files(folder / "model.onnx")

    def _quantized(self, folder: Path, seen: Dataset, cb: Callbacks) -> tuple[Any, list[Path]]:
        from core.artifacts._onnx import onnx_files
        from core.quantization import load_artifact, make_config, quantize

        config = make_config(self.cfg.quantize, {"seed": self.cfg.seed})
        quantize(copy.deepcopy(self.model).eval(), seen, config, out_dir=folder, callbacks=cb,
                 measure_options={"threads": self.threads, "memory": False})
        artifact = next((folder / n for n in ("model.onnx", "model.pt2", "model.pt")
                         if (folder / n).is_file()), None)
        if artifact is None:  # pragma: no cover - the verb always writes one
            raise StudioError(f"The {self.cfg.quantize} run wrote no model file.")
        files = onnx_files(artifact) if artifact.suffix == ".onnx" else [artifact]
        return load_artifact(artifact, threads=self.threads), files

    # --- after the sequence -----------------------------------------------------------------
    def check_did_something(self) -> None:
        """Pruning that removed nothing fails loudly."""
        from core.measure import torch_param_counts

        if self.cfg.prune is not None and self.rows:
            params, nonzero = torch_param_counts(self.model)
            if nonzero >= self.params_start[1]:
                raise StudioError(f"Pruning ({self.cfg.prune}) removed no weights over "
                                  f"{len(self.rows)} task(s): {nonzero:,} non-zero parameters "
                                  "before and after.")

    def measure(self, data: Dataset, *, measure_options: Mapping[str, Any] | None = None,
                callbacks: Callbacks | None = None) -> dict[str, Any]:
        """Every task's artifact measured under one protocol, interleaved (size, latency,
        accuracy on ``data``'s test split)."""
        from core.measure import measure_many

        models = {name: m for name, (m, _) in self.deployed.items()}
        files = {name: f for name, (_, f) in self.deployed.items()}
        opts = {"threads": self.threads, **dict(measure_options or {})}
        return measure_many(models, data, files=files, callbacks=callbacks, **opts)

    def summary(self) -> dict[str, Any]:
        """The accuracy matrix and the figures after the last task."""
        return {"accuracy_matrix": self._square(), "tasks": list(self.rows),
                **summarize(self._square()), "replay": {"size": self.buffer.size,
                                                        "rows_kept": len(self.buffer),
                                                        "per_class": self.buffer.counts()}}
