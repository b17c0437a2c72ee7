"""The ``continual`` verb: learn a task sequence, optimize after each task, measure, report."""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from core.callbacks import Callbacks
from core.continual._config import ContinualConfig
from core.continual._engine import ContinualTrainer
from core.continual._tasks import TaskSequence, build_tasks, merge_tasks
from core.data import Dataset
from core.errors import InvalidParameterError, UnsupportedModelError
from core.registry import register_method, resolve_config
from core.training import check_model_fits

if TYPE_CHECKING:
    from core.runs import RunResult

__all__ = ["continual"]

OPERATION = "continual"


def _sequence(tasks: Any, config: ContinualConfig) -> TaskSequence:
    if tasks is None:
        return build_tasks(config)
    if isinstance(tasks, TaskSequence):
        return tasks
    if isinstance(tasks, Sequence) and len(tasks) >= 1 and all(isinstance(t, Dataset)
                                                                for t in tasks):
        return TaskSequence(list(tasks), [f"task {i + 1}" for i in range(len(tasks))], "given",
                            {"sequence": "given", "n_tasks": len(tasks)})
    raise InvalidParameterError("tasks", "a TaskSequence, a list of Datasets or None (the "
                                "config's sequence)", type(tasks).__name__)


def _model(model: Any, seq: TaskSequence, config: ContinualConfig) -> tuple[Any, str | None]:
    """A trainable copy of the model (the caller's is never changed) and its parent run."""
    import torch

    from core.models import model_for_data
    from core.training import seed_everything

    if model is None:
        seed_everything(config.seed)
        first = seq.tasks[0]
        return model_for_data(config.model, first.input_shape, first.num_classes), None
    if isinstance(model, (str, Path)):  # opened by core.inputs' rules, on the first task
        from core.inputs import kind_name, open_input

        inp = open_input(model, seq.tasks[0])
        if inp.kind != "builtin":
            raise UnsupportedModelError(
                f"Continual learning trains the model, so it needs a trainable form: a "
                f"built-in run folder (model.json + model.safetensors), not "
                f"{kind_name(inp.kind)}.")
        return inp.model, inp.run_id
    if isinstance(model, torch.nn.Module):
        return copy.deepcopy(model), None
    raise InvalidParameterError("model", "None (a built-in family), a run folder or an "
                                "nn.Module", type(model).__name__)


def _save_final(trainer: ContinualTrainer, tmp: Path, data: Dataset) -> None:
    """The final deployed model at the run's root, so the run opens like any variant."""
    from core.artifacts import export_onnx, save_model
    from core.models import is_builtin

    last = tmp / "tasks" / f"task_{len(trainer.rows)}"
    if trainer.cfg.quantize:
        for f in last.iterdir():
            if f.is_file() and f.name != "report.json":
                shutil.copyfile(f, tmp / f.name)
        return
    model = trainer.model
    if is_builtin(model):
        if trainer.cfg.prune in ("structured-l1", "structured-l2"):
            from core.pruning._structured import materialise

            model, _ = materialise(model, data)
        save_model(model, tmp, data=data)
    else:
        import torch

        export_onnx(model, tmp / "model.onnx", torch.from_numpy(data.X_test[:1]))


def _warnings(config: ContinualConfig, seq: TaskSequence) -> list[str]:
    notes = []
    if config.replay_size == 0:
        notes.append("No replay buffer (replay_size=0): each task is learned on its own rows "
                     "only (sequential fine-tuning), so earlier tasks are usually forgotten.")
    if config.prune in ("l1-unstructured", "global-magnitude"):
        notes.append("Unstructured sparsity does not shrink model.onnx nor its latency here "
                     "(dense kernels, dense file); per-task sizes are the dense ONNX bytes.")
    if seq.kind == "domain-incremental":
        notes.append("Permuted digits: report['data'] names the unpermuted digits set (task 1);"
                     " the permutations are rebuilt from the sequence's seed.")
    return notes


def _task_rows(trainer: ContinualTrainer, measured: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in trainer.rows:
        m = measured[f"task_{row['task']}"]
        rows.append({**row, "size_bytes": m.size_bytes, "latency_ms": m.latency_ms,
                     "throughput_per_s": m.throughput_per_s, "macs": m.macs,
                     "accuracy_all_tasks": m.accuracy, "peak_memory_mb": m.peak_memory_mb})
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], n_tasks: int) -> None:
    heads = ["task", "name", "average_accuracy", "forgetting", "backward_transfer",
             "size_bytes", "latency_b1_p50_ms", "latency_b64_p50_ms", "sparsity_target",
             "nonzero_params"] + [f"acc_task_{j + 1}" for j in range(n_tasks)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(heads)
        for r in rows:
            lat = r["latency_ms"]
            w.writerow([r["task"], r["name"], r["average_accuracy"], r["forgetting"],
                        r["backward_transfer"], r["size_bytes"],
                        (lat.get("1") or {}).get("p50"), (lat.get("64") or {}).get("p50"),
                        r["sparsity_target"], r["nonzero_params"]]
                       + [a for a in r["accuracy"]] + [""] * (n_tasks - len(r["accuracy"])))


def write_continual_run(trainer: ContinualTrainer, tmp: Path, everything: Dataset,
                        sequence: Mapping[str, Any], *, warnings: Sequence[str] = (),
                        parent: str | None = None,
                        measure_options: Mapping[str, Any] | None = None,
                        callbacks: Callbacks | None = None) -> dict[str, Any]:
    """Measure every task's artifact (interleaved) and write report.json and tasks.csv in
    ``tmp`` (which holds ``tasks/task_<k>/``); returns the report."""
    from core.artifacts import build_report, file_entry, write_report
    from core.measure import environment_manifest

    cb = Callbacks.ensure(callbacks)
    trainer.check_did_something()
    _save_final(trainer, tmp, everything)
    cb.progress(0.86, "Measuring every task's artifact side by side")
    measured = trainer.measure(everything, measure_options=measure_options, callbacks=Callbacks(
        on_progress=lambda f, m: cb.progress(0.86 + 0.13 * f, m), cancel=cb.cancel))
    summary = trainer.summary()
    summary["tasks"] = _task_rows(trainer, measured)
    summary["sequence"] = dict(sequence)
    n = len(trainer.rows)
    _write_csv(tmp / "tasks.csv", summary["tasks"], n)
    artifacts = [file_entry(p, tmp) for p in sorted(tmp.rglob("*"))
                 if p.is_file() and p.name != "report.json"]
    last = measured[f"task_{n}"]
    config = trainer.cfg
    report = build_report(
        operation=OPERATION, method=config.method, config=config.to_dict(), seed=config.seed,
        baseline=None, result=last, artifacts=artifacts,
        environment=environment_manifest(threads=last.threads),
        warnings=[*warnings, *trainer.warnings], parent=parent,
        extra={"continual": summary})
    report["data"] = trainer.tasks[0].spec.to_dict()
    write_report(tmp, report)
    return report


def continual(
    model: Any = None,
    tasks: Any = None,
    config: ContinualConfig | Mapping[str, Any] | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    measure_options: Mapping[str, Any] | None = None,
    parent: str | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Learn ``tasks`` (default: the config's sequence) one after another with a replay buffer,
    pruning and/or quantizing after each task, and write a measured run folder.

    ``model``: None (a fresh ``config.model`` family), a built-in run folder or an nn.Module
    (copied; the caller's is not changed). Every task's deployable artifact is kept in
    ``tasks/task_<k>/`` and measured side by side at the end (interleaved); report.json holds
    the accuracy matrix, average accuracy, forgetting, backward transfer and per-task size
    and latency. Returns a ``RunResult``.
    """
    from core.artifacts import staging
    from core.runs import RunResult

    config = resolve_config(config, overrides, area="continual", cls=ContinualConfig)
    cb = Callbacks.ensure(callbacks)
    cb.progress(0.0, "Building the task sequence")
    seq = _sequence(tasks, config)
    net, run_parent = _model(model, seq, config)
    check_model_fits(net, seq.tasks[0], logits_for="the classes of all tasks")
    threads = int((measure_options or {}).get("threads", 1))
    everything = merge_tasks(seq.tasks, name="all tasks")
    with staging(out_dir, overwrite=overwrite, inputs=[model]) as tmp:
        trainer = ContinualTrainer(net, config, workdir=tmp / "tasks", n_tasks=len(seq),
                                   threads=threads)
        span = 0.85 / len(seq)
        for k, (task, name) in enumerate(zip(seq.tasks, seq.names)):
            trainer.train_task(task, name=name, callbacks=Callbacks(
                on_progress=lambda f, m, k=k: cb.progress(k * span + f * span, m),
                on_metrics=cb.metrics, cancel=cb.cancel))
        report = write_continual_run(
            trainer, tmp, everything, {**seq.spec, "kind": seq.kind, "tasks": seq.summary()},
            warnings=_warnings(config, seq), parent=parent or run_parent,
            measure_options=measure_options, callbacks=cb)
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


@register_method("experience-replay", area="continual", config=ContinualConfig,
                 summary="Learn tasks in sequence with an experience-replay buffer (reservoir "
                         "sampling; size 0 = sequential fine-tuning), optionally pruning "
                         "and/or quantizing after each task.")
def experience_replay(model: Any, tasks: Any, config: ContinualConfig, **kwargs: Any) -> Any:
    """The registered method: the ``continual`` verb."""
    return continual(model, tasks, config, **kwargs)
