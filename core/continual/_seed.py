"""The seed's ``HardwareOptimizedTrainer`` (Phase 4 notes) as a facade over ``core.continual``.

``train_task`` trains one task with the continual trainer (replay buffer, pruning growing
across tasks, a quantized copy per task); ``get_efficiency_summary`` measures every task's
artifact side by side and writes a run folder (``results/continual-<id>``);
``print_efficiency_report`` prints it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from core.errors import InvalidParameterError

__all__ = ["HardwareOptimizedTrainer"]

# The seed's quantization_dtype values → studio quantization methods.
DTYPES = {"qint8": "ort-static-int8", "int8": "ort-static-int8", "float16": "ort-fp16",
          "fp16": "ort-fp16", "dynamic": "ort-dynamic-int8"}


class HardwareOptimizedTrainer:
    """``HardwareOptimizedTrainer(model, device, enable_quantization, quantization_dtype,
    enable_pruning, target_sparsity, prune_per_task, track_efficiency)``; the sparsity grows
    on a cubic schedule to ``target_sparsity`` at task ``num_tasks`` (default 5)."""

    def __init__(self, model: Any, device: str = "cpu", enable_quantization: bool = False,
                 quantization_dtype: str = "qint8", enable_pruning: bool = False,
                 target_sparsity: float = 0.5, prune_per_task: bool = True,
                 track_efficiency: bool = True, *, num_tasks: int = 5, replay_size: int = 200,
                 pruning_method: str = "structured-l2", workdir: str | Path = "results",
                 measure_options: Mapping[str, Any] | None = None) -> None:
        from core.continual._config import ContinualConfig
        from core.continual._engine import ContinualTrainer
        from core.seed_compat import check_device

        check_device(device)
        if enable_quantization and quantization_dtype not in DTYPES:
            raise InvalidParameterError("quantization_dtype", f"one of {sorted(DTYPES)}",
                                        quantization_dtype)
        if not prune_per_task and enable_pruning:
            raise InvalidParameterError("prune_per_task", "True when pruning (the sparsity "
                                        "grows task by task to target_sparsity)",
                                        prune_per_task)
        self.config = ContinualConfig(
            n_tasks=max(int(num_tasks), 2), replay_size=replay_size,
            prune=pruning_method if enable_pruning else None, sparsity=target_sparsity,
            quantize=DTYPES[quantization_dtype] if enable_quantization else None)
        self.track_efficiency = track_efficiency
        self.workdir, self.measure_options = Path(workdir), measure_options
        self._scratch = Path(tempfile.mkdtemp(prefix="studio-continual-"))
        self.trainer = ContinualTrainer(model, self.config, workdir=self._scratch,
                                        n_tasks=self.config.n_tasks)
        self.model = model  # trained in place, as the seed's trainer does
        self.last: Any = None
        self._written_at = 0

    def train_task(self, task_id: Any, train_loader: Any, test_loader: Any = None, *,
                   epochs: int = 10, lr: float = 0.001) -> dict[str, Any]:
        """Train one task from its loaders; returns its row (accuracy on every task seen)."""
        from core.seed_compat import dataset_from_loader

        data = dataset_from_loader(train_loader, test_loader, seed=self.config.seed)
        data.class_names = [str(c) for c in range(self._classes(data))]
        data.name = f"task {task_id}"
        return self.trainer.train_task(data, name=f"task {task_id}", epochs=epochs, lr=lr)

    def _classes(self, data: Any) -> int:
        import torch

        with torch.no_grad():
            out = self.model.eval()(torch.from_numpy(data.X_train[:2]))
        if out.ndim != 2 or out.shape[1] <= int(data.y_train.max()):
            raise InvalidParameterError("model output", f"(batch, classes) logits covering "
                                        f"label {int(data.y_train.max())}", list(out.shape))
        return int(out.shape[1])

    def get_efficiency_summary(self) -> dict[str, Any]:
        """Accuracy matrix, average accuracy, forgetting, backward transfer and, per task,
        the artifact's size and latency (measured side by side); writes the run folder."""
        if not self.trainer.rows:
            raise InvalidParameterError("tasks trained", "at least 1 (call train_task first)",
                                        0)
        if self._written_at != len(self.trainer.rows):
            self._write()
        cont = self.last.report["continual"]
        tasks = [{"task": r["task"], "name": r["name"], "accuracy": r["accuracy"],
                  "average_accuracy": r["average_accuracy"], "size_mb": r["size_bytes"] / 2**20,
                  "latency_ms": r["latency_ms"]["1"]["p50"],
                  "fps": 1000.0 / r["latency_ms"]["1"]["p50"], "params": r["params"],
                  "nonzero_params": r["nonzero_params"], "sparsity": r["sparsity_target"]}
                 for r in cont["tasks"]]
        return {"num_tasks": len(tasks), "average_accuracy": cont["average_accuracy"],
                "forgetting": cont["forgetting"], "backward_transfer": cont["backward_transfer"],
                "accuracy_matrix": cont["accuracy_matrix"], "tasks": tasks,
                "size_reduction": tasks[0]["size_mb"] / tasks[-1]["size_mb"],
                "run_dir": str(self.last.run_dir)}

    def _write(self) -> None:
        from core.artifacts import new_run_id, staging
        from core.continual._tasks import merge_tasks
        from core.continual._verb import write_continual_run
        from core.runs import RunResult

        out = self.workdir / new_run_id("continual")
        everything = merge_tasks(self.trainer.tasks, name="all tasks")
        with staging(out) as tmp:
            shutil.copytree(self._scratch, tmp / "tasks")
            report = write_continual_run(
                self.trainer, tmp, everything,
                {"sequence": "loaders", "n_tasks": len(self.trainer.rows)},
                measure_options=self.measure_options)
        self.last, self._written_at = RunResult(out, report), len(self.trainer.rows)

    def print_efficiency_report(self) -> None:
        """The summary as a table on stdout."""
        s = self.get_efficiency_summary()
        print(f"Efficiency over {s['num_tasks']} tasks (run {Path(s['run_dir']).name})")
        print(f"{'task':>4} {'avg acc':>8} {'size MB':>9} {'p50 b1 ms':>10} {'FPS':>8} "
              f"{'non-zero params':>16}")
        for t in s["tasks"]:
            print(f"{t['task']:>4} {t['average_accuracy']:>8.4f} {t['size_mb']:>9.4f} "
                  f"{t['latency_ms']:>10.3f} {t['fps']:>8.0f} {t['nonzero_params']:>16,}")
        fgt, bwt = s["forgetting"], s["backward_transfer"]
        print(f"average accuracy {s['average_accuracy']:.4f}, forgetting "
              f"{'n/a' if fgt is None else f'{fgt:.4f}'}, backward transfer "
              f"{'n/a' if bwt is None else f'{bwt:+.4f}'}, size ×{s['size_reduction']:.2f} "
              "smaller than after task 1")

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True) \
            if getattr(self, "_scratch", None) else None
