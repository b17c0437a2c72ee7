"""The ``distill`` verb: train a KD student and a label-only student, measure them, report."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from core.callbacks import Callbacks
from core.distillation._config import DistillConfig
from core.distillation._methods import Setup
from core.distillation._student import (
    build_student,
    check_student,
    converted_student,
    onnx_student,
)
from core.distillation._transfer import build_transfer_set
from core.errors import InvalidParameterError, UnsupportedModelError
from core.registry import resolve_config

if TYPE_CHECKING:
    from core.runs import RunResult

OPERATION = "distill"


class _Trainee:
    """Builds an nn.Module holding the student and the method's trainable extras."""

    @staticmethod
    def wrap(student: Any, extra: Any) -> Any:
        from torch import nn

        class Trainee(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.student = student
                self.extra = extra if extra is not None else nn.Identity()
                self.input_shape = getattr(student, "input_shape", None)

            def forward(self, x: Any) -> Any:
                return self.student(x)

        return Trainee()


def _open_model(model: Any, data: Any, role: str = "teacher") -> dict[str, Any]:
    """A teacher (or extra teacher) opened by core.inputs' rules, named by its role in
    messages; a live module's kind is 'torch'."""
    from core.inputs import open_input

    inp = open_input(model, data, role=role)
    kind = inp.kind if inp.loaded is not None or inp.kind == "onnx" else "torch"
    return {"model": inp.model, "files": inp.files, "meta": inp.meta, "kind": kind,
            "data": inp.data, "loaded": inp.loaded, "parent": inp.run_id,
            "path": str(inp.path) if inp.path is not None else None}


def _check_teacher(model: Any, data: Any, role: str) -> int:
    from core.measure import predict_logits

    try:
        out = predict_logits(model, data.X_train[:2])
    except Exception as exc:
        raise InvalidParameterError(
            role, f"a model that takes the data's inputs of shape {list(data.input_shape)} "
            f"({str(exc).splitlines()[0][:120]})", type(model).__name__) from None
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise InvalidParameterError(
            role, f"a model with the data's {data.num_classes} output classes",
            f"a model with {out.shape[-1]} outputs")
    return int(out.shape[1])


def _student(config: DistillConfig, student: Any, teacher: dict[str, Any], data: Any) -> tuple:
    """The student module and where it came from."""
    from core.artifacts import load_model
    from core.training import seed_everything

    seed_everything(config.seed)
    given = student if student is not None else config.student
    if given is None:
        if teacher["kind"] == "onnx" and config.family is None and not _builtin_meta(teacher):
            return onnx_student(teacher.get("loaded"), data, width=config.width,
                                depth=config.depth, seed=config.seed)
        model = build_student(teacher["model"] if teacher["kind"] != "onnx" else None, data,
                              width=config.width, depth=config.depth, family=config.family,
                              teacher_meta=teacher["meta"])
        return model, f"scaled from the teacher (width {config.width:g}, depth "\
                      f"{config.depth:g})"
    if isinstance(given, (str, Path)):
        loaded = load_model(given)
        if loaded.kind == "onnx":
            return converted_student(loaded, what="student"), f"given: {Path(given).name} " \
                "(ONNX, converted to a trainable torch module)"
        if loaded.kind != "builtin":
            raise UnsupportedModelError(
                f"The student '{given}' is {loaded.kind}; a student must be trainable: a "
                "built-in run folder (model.json + model.safetensors).")
        return loaded.model, f"given: {given}"
    return copy.deepcopy(given), f"given: {type(given).__name__}"


def _builtin_meta(teacher: dict[str, Any]) -> bool:
    """Whether an ONNX teacher's run folder records a built-in family (its own or its
    source model's), from which a student can be scaled."""
    meta = teacher["meta"] or {}
    return any(m.get("family") and m.get("kwargs")
               for m in (meta, meta.get("source_model") or {}))


def _label_only_epochs(config: DistillConfig, n_transfer: int, n_labelled: int) -> int:
    """Epochs for the label-only student: the KD student's step count, or its epochs."""
    if config.budget == "epochs":
        return config.epochs
    steps = config.epochs * math.ceil(n_transfer / config.batch_size)
    return min(10_000, max(config.epochs, math.ceil(steps / math.ceil(n_labelled
                                                                      / config.batch_size))))


def _fresh_fields(model: Any) -> dict[str, Any]:
    from core.measure import torch_param_counts

    params, nonzero = torch_param_counts(model)
    return {"params": params, "nonzero_params": nonzero}


def _open_teachers(teacher: Any, teachers: Sequence[Any], data: Any, config: DistillConfig
                   ) -> tuple[dict[str, Any], int, list[Any]]:
    """The opened teacher, its class count, and the extra teachers' modules (checked)."""
    t = _open_model(teacher, data)
    data = t["data"]
    classes = _check_teacher(t["model"], data, "teacher")
    extra = []
    for i, other in enumerate([*config.teachers, *teachers]):
        o = _open_model(other, data, f"teachers[{i}]")
        _check_teacher(o["model"], data, f"teachers[{i}]")
        extra.append(o["model"])
    if extra and config.method != "multi-teacher":
        raise InvalidParameterError("teachers", "empty unless the method is 'multi-teacher'",
                                    [str(x) for x in config.teachers] or len(extra))
    return t, classes, extra


def _kd_loss(method: Any, labels: Any, config: DistillConfig) -> Any:
    """The KD student's loss: the distillation loss plus the method's extra term."""
    from core.training import distillation_loss

    T, alpha = config.temperature, config.alpha

    def loss_fn(net: Any, xb: Any, idx: Any) -> Any:
        logits = net(xb)
        probs = method.teacher_probs(xb, idx)  # always: some methods hook the teacher here
        loss = distillation_loss(logits, None, labels[idx], alpha=alpha, temperature=T,
                                 teacher_probs=probs)
        term = method.extra_loss(xb, idx, logits)
        if term is not None and method.beta > 0:
            loss = loss + method.beta * term
        return loss

    return loss_fn


def _train_kd(method: Any, model: Any, data: Any, config: DistillConfig, transfer: Any,
              cb: Callbacks) -> Any:
    """Train the KD student on the transfer set (with the method's trainable extras)."""
    import torch

    from core.training import train

    loss_fn = _kd_loss(method, torch.from_numpy(transfer.labels), config)
    try:
        extra_modules = method.prepare(cb.sub(0.02, 0.06))
        trainee = _Trainee.wrap(model, extra_modules)
        kd = train(trainee, data, config.train_config(),
                   callbacks=cb.sub(0.06, 0.5, "kd: ", tag={"student": "kd"}),
                   loss_fn=loss_fn, after_step=method.after_step,
                   train_split=(transfer.X, np.arange(len(transfer.labels))))
    finally:
        method.close()
    model.eval()
    return kd


def _train_label_only(label_only: Any, data: Any, config: DistillConfig, transfer: Any,
                      cb: Callbacks) -> tuple[Any, int, int]:
    """Train the same student on the labelled rows only; its result, epochs and rows."""
    from core.training import train

    lo_split = transfer.labelled_split()
    lo_epochs = _label_only_epochs(config, len(transfer.labels), len(lo_split[1]))
    lo = train(label_only, data, config.train_config(lo_epochs),
               callbacks=cb.sub(0.5, 0.82, "label-only: ", tag={"student": "label-only"}),
               train_split=lo_split)
    return lo, lo_epochs, len(lo_split[1])


def _measured_form(tmp: Path, model: Any, teacher: dict[str, Any], warnings: list[str]
                   ) -> tuple[Any, list[Path]]:
    """The student as it is measured (ORT for an ONNX teacher) and its files."""
    from core.measure import ort_session

    if teacher["kind"] == "onnx":
        warnings.append("The teacher is an ONNX model, so the student is measured as its "
                        "model.onnx under ONNX Runtime too.")
        return ort_session(tmp / "model.onnx"), [tmp / "model.onnx"]
    return model, [tmp / "model.safetensors"] if (tmp / "model.safetensors").exists() \
        else [tmp / "model.onnx"]


def _outcome_warnings(gain: float, t_params: int | None, s_params: int, warnings: list[str]
                      ) -> None:
    if gain <= 0:
        warnings.append(f"The distilled student is not more accurate than the label-only "
                        f"student ({gain * 100:+.2f} pt on the test split).")
    if t_params and s_params >= t_params:
        warnings.append(f"The student has {s_params:,} parameters, not fewer than the "
                        f"teacher's {t_params:,}.")


def distill(
    teacher: Any,
    data: Any = None,
    config: DistillConfig | Mapping[str, Any] | str | None = None,
    *,
    out_dir: str | Path,
    student: Any = None,
    teachers: Sequence[Any] = (),
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Distil ``teacher`` into a smaller student, and train the same student on labels only.

    ``teacher`` is an nn.Module, an ONNX Runtime session, a run folder or a model file;
    ``data`` a Dataset or name (default: the teacher run's data). The student is scaled
    from the teacher (``config.width``/``depth``) unless ``student`` (module) or
    ``config.student`` (run folder) is given; ``teachers``/``config.teachers`` add teachers
    for ``multi-teacher``. Writes ``out_dir`` (student model.json/.safetensors/.onnx,
    ``label_only/``, report.json with the teacher as the measured baseline) and returns a
    ``RunResult``. ``config``: a DistillConfig, a mapping of its fields or a method name;
    ``overrides`` replace its fields (``distill(run, None, "soft-target", alpha=0.5, ...)``).
    """
    from core.artifacts import save_model, staging, write_run
    from core.measure import evaluate, metrics_from_logits, predict_logits
    from core.models import is_builtin
    from core.registry import get_method
    from core.runs import RunResult

    config = resolve_config(config, overrides, area="distillation", cls=DistillConfig)
    cb = Callbacks.ensure(callbacks)
    out_dir = Path(out_dir)
    cb.progress(0.0, "Loading the teacher")
    t, classes, extra = _open_teachers(teacher, teachers, data, config)
    data = t["data"]
    model, origin = _student(config, student, t, data)
    check_student(model, data, classes)
    transfer = build_transfer_set(data, label_fraction=config.label_fraction,
                                  unlabelled=config.unlabelled, seed=config.seed)
    label_only = copy.deepcopy(model)
    method = get_method("distillation", config.method).fn(
        Setup(teacher=t["model"], student=model, data=data, config=config,
              transfer=transfer, extra_teachers=extra))
    warnings: list[str] = []
    with staging(out_dir, overwrite=overwrite,
                 inputs=[teacher, student, *teachers]) as tmp:
        kd = _train_kd(method, model, data, config, transfer, cb)
        lo, lo_epochs, lo_rows = _train_label_only(label_only, data, config, transfer, cb)
        cb.progress(0.83, "Saving the students")
        saved = save_model(model, tmp, data=data)
        # A user's own nn.Module has no safetensors form here: its ONNX is its artifact.
        lo_saved = save_model(label_only, tmp / "label_only", data=data,
                              onnx=not is_builtin(label_only))
        lo_metrics = metrics_from_logits(predict_logits(label_only, data.X_test), data.y_test)
        kd_metrics = evaluate(model, data, "test")
        lo_files = [f for f in lo_saved["files"] if f.suffix in (".safetensors", ".onnx")]
        result_model, result_files = _measured_form(tmp, model, t, warnings)
        gain = kd_metrics.accuracy - lo_metrics.accuracy
        t_params = _fresh_fields(t["model"])["params"] if t["kind"] != "onnx" else None
        _outcome_warnings(gain, t_params, _fresh_fields(model)["params"], warnings)
        lo_entry = {
            "accuracy": lo_metrics.accuracy, "f1_macro": lo_metrics.f1_macro,
            "size_bytes": sum(f.stat().st_size for f in lo_files), **_fresh_fields(label_only),
            "history": lo.history, "path": "label_only", "epochs": lo_epochs,
            "steps": lo_epochs * math.ceil(lo_rows / config.batch_size),
        }
        extra_report = {"distillation": {
            "student": {"origin": origin, "spec": model.spec().to_dict()
                        if hasattr(model, "spec") else None, **_fresh_fields(model)},
            "teacher": {"path": t["path"], "kind": t["kind"], "params": t_params,
                        "extra_teachers": [str(x) for x in config.teachers] or len(extra)},
            "kd_student": {"accuracy": kd_metrics.accuracy, "f1_macro": kd_metrics.f1_macro,
                           "history": kd.history, "epochs": config.epochs,
                           "steps": config.epochs * math.ceil(len(transfer.labels)
                                                              / config.batch_size)},
            "budget": config.budget,
            "label_only": lo_entry,
            "gain": gain,
            "gain_pt": gain * 100,
            "transfer_set": transfer.summary(),
            "method": {"name": config.method, "temperature": config.temperature,
                       "alpha": config.alpha, **method.describe()},
            "train_seconds": {"kd": kd.seconds, "label_only": lo.seconds},
            "onnx_parity_max_abs_diff": saved["onnx_parity"],
        }}
        report = write_run(
            tmp, operation=OPERATION, method=config.method, config=config.to_dict(),
            data=data, result_model=result_model, result_files=list(result_files),
            baseline_model=t["model"], baseline_files=list(t["files"]), seed=config.seed,
            warnings=warnings, parent=parent or t["parent"], extra=extra_report,
            label="The distilled student", measure_options=measure_options,
            callbacks=cb.sub(0.85, 1.0),
        )
    cb.progress(1.0, "Done")
    return RunResult(out_dir, report)
