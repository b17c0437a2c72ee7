"""Turn a trial of a finished study into a measured run folder (a variant)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from core.callbacks import Callbacks
from core.errors import InvalidParameterError
from core.runs import RunResult


def pick_trial(study: Mapping[str, Any], trial: int | None = None) -> Mapping[str, Any]:
    """The chosen trial row: ``trial`` by number, else the first best (or Pareto) trial."""
    if trial is None:
        if not study.get("best"):
            raise InvalidParameterError("trial", "given: the study has no feasible completed "
                                        "trial to train", None)
        return study["best"][0]
    for row in study.get("trials", []):
        if row["number"] == trial:
            if row["state"] != "complete":
                raise InvalidParameterError("trial", "a completed trial", trial)
            return row
    raise InvalidParameterError("trial", "the number of a trial of this study", trial)


def train_best(
    study_run_dir: str | Path,
    *,
    out_dir: str | Path,
    trial: int | None = None,
    baseline: Any = None,
    callbacks: Callbacks | None = None,
    measure_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Retrain the best (or a chosen) trial's model and write a measured run folder.

    ``baseline`` (a run folder) is measured side by side with the result, so the variant
    shows its ratios in Comparison; its id is the new run's ``parent``.
    """
    from core.artifacts import load_model, read_report, save_model, staging, write_run
    from core.models import model_for_data
    from core.runs import data_from_report
    from core.training import TrainConfig, seed_everything, train

    report = read_report(study_run_dir)
    if report.get("operation") != "tune" or "study" not in report:
        raise InvalidParameterError("study run", "a folder written by 'studio tune'",
                                    Path(study_run_dir).name)
    study = report["study"]
    row = pick_trial(study, trial)
    if row.get("run_dir"):  # a recipe trial already is a measured run folder: hand it out
        return _copy_recipe_trial(Path(study_run_dir), report, row, Path(out_dir),
                                  overwrite=overwrite)
    data = data_from_report(report)
    family = study.get("family") or report["config"].get("model", "cnn")
    model_kwargs = dict(row.get("model_kwargs") or {})
    tcfg = TrainConfig.from_dict(row.get("train_config") or {})
    cb = Callbacks.ensure(callbacks)
    seed_everything(tcfg.seed)  # the trial's initial weights: it retrains to the same model
    net = model_for_data(family, data.input_shape, data.num_classes, **model_kwargs)
    base_model, base_files, parent = None, [], Path(study_run_dir).name
    if baseline is not None:
        loaded = load_model(baseline)
        base_model, base_files, parent = loaded.model, loaded.files(), Path(baseline).name
    with staging(out_dir, overwrite=overwrite, inputs=[baseline]) as tmp:
        result = train(net, data, tcfg, callbacks=cb)
        saved = save_model(net, tmp, data=data)
        rep = write_run(
            tmp, operation="tune", method=report.get("method"), data=data, result_model=net,
            result_files=[tmp / "model.safetensors"], baseline_model=base_model,
            baseline_files=base_files, seed=tcfg.seed, parent=parent,
            label=f"best trial {row['number']}",
            config={"model": family, "model_kwargs": net.spec().kwargs, **tcfg.to_dict(),
                    "study": study.get("study_name"), "trial": row["number"],
                    "params": row.get("params")},
            extra={"training": result.to_dict(), "onnx_parity_max_abs_diff": saved["onnx_parity"],
                   "tuning": {"study_run": Path(study_run_dir).name, "trial": row["number"],
                              "trial_values": row.get("values")}},
            measure_options=measure_options, callbacks=cb,
        )
    return RunResult(Path(out_dir), rep)


def _copy_recipe_trial(study_dir: Path, report: Mapping[str, Any], row: Mapping[str, Any],
                       out_dir: Path, *, overwrite: bool = False) -> RunResult:
    """Copy a recipe trial's final run folder as a variant (its figures were measured)."""
    import shutil

    from core.artifacts import read_report, staging, write_report

    src = Path(row["run_dir"])
    if not (src / "report.json").is_file():
        raise InvalidParameterError("trial", "a trial whose run folder still exists",
                                    row["number"])
    with staging(out_dir, overwrite=overwrite, inputs=[src]) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        rep = read_report(tmp)
        rep["tuning"] = {"study_run": study_dir.name, "trial": row["number"],
                         "trial_values": row.get("values"), "steps": row.get("steps")}
        rep["config"] = {**dict(rep.get("config") or {}),
                         "study": report["study"].get("study_name"), "trial": row["number"],
                         "params": row.get("params")}
        write_report(tmp, rep)
    return RunResult(out_dir, rep)
