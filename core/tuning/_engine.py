"""The ``tune`` verb: run (or resume) an Optuna study and write its report, CSV and YAML."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from core.callbacks import Callbacks
from core.errors import InvalidParameterError, StudioError, UnsupportedModelError
from core.registry import resolve_config
from core.runs import RunResult
from core.tuning._config import TuneConfig, family_keys
from core.tuning._objective import TrialObjective, trial_info
from core.tuning._search import make_pruner, make_sampler
from core.tuning._space import SearchSpace
from core.tuning._storage import (
    check_study,
    default_storage,
    mask_url,
    normalize_url,
    open_storage,
    storage_kind,
)

STUDY_SCHEMA = "optimization-studio/study/v1"
_STRIP = ("input_shape", "input_dim", "num_classes")


def _resolve(model_or_run: Any, data: Any, config: TuneConfig
             ) -> tuple[str, dict[str, Any], Any, str | None]:
    """(family, base model kwargs, data set, parent run id) for a study: a family name (or
    none: the config's), or a built-in model / run folder opened by core.inputs' rules (a
    live model without data uses the config's data)."""
    from core.inputs import kind_name, open_data, open_input
    from core.models import list_families

    family, base, parent = config.model, {}, None
    if isinstance(model_or_run, str) and model_or_run in list_families():
        family, model_or_run = model_or_run, None
    if model_or_run is None:
        dataset = open_data(config.data if data is None else data, seed=config.seed)
    else:
        if data is None and not isinstance(model_or_run, (str, Path)):
            data = config.data
        inp = open_input(model_or_run, data, seed=config.seed)
        if inp.kind != "builtin":
            raise UnsupportedModelError(
                f"Tuning retrains a built-in family (mlp, cnn, vit) from scratch, and this is "
                f"{kind_name(inp.kind)}; give a family name, a built-in model or its run "
                "folder.")
        spec = inp.model.spec()
        family, base, dataset, parent = spec.family, dict(spec.kwargs), inp.data, inp.run_id
    base = {k: v for k, v in base.items() if k not in _STRIP}
    if family != config.model:
        bad = sorted(set(config.search_space().names) - family_keys(family))
        if bad:
            raise InvalidParameterError(f"space.{bad[0]}", f"a parameter of the '{family}' "
                                        "model or of training", bad[0])
    return family, base, dataset, parent


def _recipe_setup(model_or_run: Any, data: Any, config: TuneConfig, out_dir: str | Path,
                  cb: Callbacks, threads: int) -> tuple[str, Any, Any, str | None]:
    """Base run folder (given, or trained once beside the run) and the trial factory."""
    from core.inputs import open_data, open_input
    from core.tuning._recipe import RecipeObjective, check_recipe_base, recipe_baseline

    results = Path(out_dir).resolve().parent
    name = config.study_name or Path(out_dir).name
    measure = {"budget_s": config.latency_budget_s, "memory": False, "threads": threads}
    parent = None
    if model_or_run is not None:
        if not isinstance(model_or_run, (str, Path)) or not Path(model_or_run).is_dir():
            raise InvalidParameterError("model", "a run folder for the 'recipe' target",
                                        Path(model_or_run).name if isinstance(
                                            model_or_run, (str, Path))
                                        else type(model_or_run).__name__)
        inp = open_input(model_or_run, data, seed=config.seed)
        base_dir, dataset, parent = Path(model_or_run), inp.data, inp.run_id
        family = ((inp.report or {}).get("config") or {}).get("model") or config.model
        check_recipe_base(base_dir, dataset, config.search_space())
    else:
        dataset = open_data(config.data if data is None else data, seed=config.seed)
        cb.progress(0.0, "Training the base model for the recipe trials")
        base_dir = recipe_baseline(config, dataset, results / f"{name}-baseline",
                                   measure_options=measure, callbacks=cb)
        family = config.model

    def objective_for(study_name: str) -> Any:
        return RecipeObjective(config, config.search_space(), dataset, base_dir,
                               results / f"{study_name}-trials", cb, threads=threads)

    return family, objective_for, dataset, parent


def open_study(config: TuneConfig, *, out_dir: str | Path | None = None, seed_offset: bool = True
               ) -> tuple[Any, str, str, bool]:
    """Create or load the config's study; returns (study, storage URL, study name, existed)."""
    import optuna

    url = normalize_url(config.storage or default_storage(out_dir or "results/tune"))
    name = config.study_name or (Path(out_dir).name if out_dir else "tune")
    kind = storage_kind(url)
    storage = open_storage(url, heartbeat_s=config.heartbeat_s if kind != "journal" else None,
                           max_retry=config.max_retry)
    existed = check_study(storage, name, config.objectives, config.directions, mask_url(url))
    n_before = 0
    if existed:
        n_before = len(optuna.load_study(study_name=name, storage=storage).trials)
    k = len(config.constraints)
    constraints = (lambda t: t.user_attrs.get("constraints", [0.0] * k)) if k else None
    # A resumed study does not replay the sampler's first draws: offset the seed.
    sampler = make_sampler(config, seed=config.seed + (n_before if seed_offset else 0),
                           constraints_func=constraints)
    pruner = make_pruner("none" if config.multi_objective else config.pruner,
                         config.pruner_options, _max_epochs(config))
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                study_name=name, directions=config.directions,
                                load_if_exists=True)
    if not existed:
        study.set_metric_names(list(config.objectives))
        study.set_user_attr("objectives", list(config.objectives))
        study.set_user_attr("target", config.target)
        study.set_user_attr("config", config.to_dict())
    return study, url, name, existed


def _max_epochs(config: TuneConfig) -> int:
    space = config.search_space()
    if "epochs" in space:
        dim = space["epochs"]
        return int(max(dim.choices) if dim.kind == "categorical" else dim.high)
    return int((config.train or {}).get("epochs", config.epochs))


def _study_notes(config: TuneConfig, summary: Mapping[str, Any]) -> list[str]:
    """The report's warnings: what the pruner and sampler could not do, no best trial."""
    notes = []
    if config.multi_objective and config.pruner not in ("none", "median"):
        notes.append(f"Optuna cannot prune multi-objective trials: the '{config.pruner}' pruner "
                     "was replaced by the studio's multi-objective median rule on accuracy.")
    if config.constraints and config.sampler not in ("tpe", "gp", "nsga2"):
        notes.append(f"The '{config.sampler}' sampler does not learn from constraints; "
                     "infeasible trials are only filtered out of the best/Pareto set.")
    if not summary["best"]:
        notes.append("No feasible completed trial: no best trial to report.")
    return notes


def tune(
    model_or_run: Any = None,
    data: Any = None,
    config: TuneConfig | Mapping[str, Any] | str | None = None,
    *,
    out_dir: str | Path,
    callbacks: Callbacks | None = None,
    parent: str | None = None,
    measure_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **overrides: Any,
) -> RunResult:
    """Run or resume a study; write ``out_dir/report.json``, ``trials.csv`` and ``study.yaml``.

    ``model_or_run``: ``None`` (the config's family), a family name, a built-in model or
    a run folder (its family and widths are the starting point, its data set the data).
    The study itself lives in ``config.storage`` (default ``studies.db`` beside ``out_dir``)
    so stopping keeps every finished trial; the run folder is staged as usual
    (``overwrite`` replaces an earlier run folder there). A study whose every trial failed
    raises :class:`StudyFailedError` with the first trial's error.
    """
    import optuna

    from core.artifacts import build_report, check_out_dir, file_entry, staging, write_report
    from core.measure import environment_manifest

    inputs = [model_or_run]
    check_out_dir(out_dir, overwrite=overwrite, inputs=inputs)  # before hours of trials
    config = resolve_config(config, overrides, area="tuning", cls=TuneConfig)
    cb = Callbacks.ensure(callbacks)
    opts = dict(measure_options or {})
    threads = int(opts.get("threads", 1))
    space = config.search_space()
    if config.target == "recipe":
        family, objective_for, dataset, found_parent = _recipe_setup(
            model_or_run, data, config, out_dir, cb, threads)
    else:
        family, base, dataset, found_parent = _resolve(model_or_run, data, config)
    cb.progress(0.0, "Opening the study")
    study, url, name, existed = open_study(config, out_dir=out_dir)
    if config.target == "recipe":
        objective = objective_for(name)
    else:
        objective = TrialObjective(config, space, dataset, family, base, cb, threads=threads,
                                   latency_budget_s=opts.get("budget_s"))
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    before = len(study.get_trials(deepcopy=False, states=done_states))
    to_run = max(0, config.n_trials - before)
    start = time.perf_counter()
    ran: list[int] = []

    def on_trial(st: Any, ft: Any) -> None:
        ran.append(ft.number)
        row = trial_row(ft, config.objectives, space)
        cb.metrics({"event": "trial", **row})
        cb.progress(len(ran) / max(to_run, 1), f"Trial {ft.number} {row['state']}"
                    + (f": {_fmt_values(row['values'])}" if row["values"] else ""))

    if to_run:
        cb.progress(0.0, f"Study '{name}': {before} finished trial(s), running {to_run} more")
        study.optimize(
            objective, n_trials=to_run, timeout=config.timeout_s,
            catch=(ValueError, RuntimeError, UnsupportedModelError),
            callbacks=[optuna.study.MaxTrialsCallback(config.n_trials, states=done_states),
                       on_trial],
        )
    seconds = time.perf_counter() - start
    summary = summarize(study, config, space)
    _raise_if_all_failed(summary)
    summary.update(storage=mask_url(url), storage_kind=storage_kind(url), study_name=name,
                   resumed=existed, finished_before=before, ran_this_time=len(ran),
                   trials_run=ran, seconds=seconds, family=family,
                   seconds_per_trial=seconds / len(ran) if ran else None)
    notes = _study_notes(config, summary)
    cb.progress(1.0, "Writing the report")
    with staging(out_dir, overwrite=overwrite, inputs=inputs) as tmp:
        export_trials_csv(study, tmp / "trials.csv", config)
        (tmp / "study.yaml").write_text(study_yaml(study, config, space, url, name))
        artifacts = [file_entry(p, tmp) for p in sorted(tmp.iterdir()) if p.is_file()]
        report = build_report(
            operation="tune", method=config.sampler, config=config.to_dict(), seed=config.seed,
            baseline=None, result=None, artifacts=artifacts,
            environment=environment_manifest(threads=threads), warnings=notes,
            parent=parent or found_parent, extra={"study": summary},
        )
        report["data"] = dataset.spec.to_dict()
        write_report(tmp, report)
    return RunResult(Path(out_dir), report)


class StudyFailedError(StudioError):
    """Every trial of a study failed: the job failed (the CLI exits 1, not 2: the config was
    valid, the trials broke)."""

    exit_code = 1


def _raise_if_all_failed(summary: Mapping[str, Any]) -> None:
    """A study with trials, none completed or pruned, is a failure, not a success."""
    rows = summary.get("trials") or []
    if rows and all(r["state"] == "fail" for r in rows):
        first = min(rows, key=lambda r: r["number"])
        raise StudyFailedError(f"All {len(rows)} trial(s) of the study failed; the first "
                               f"(trial {first['number']}) with: "
                               f"{first.get('error') or 'no error recorded'}")


# --- summaries and exports -------------------------------------------------------------
def _fmt_values(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


def trial_row(t: Any, objectives: Sequence[str], space: SearchSpace | None = None
              ) -> dict[str, Any]:
    """One row of the trials table (JSON-friendly)."""
    attrs = trial_info(t)
    values = dict(zip(objectives, t.values)) if t.values is not None and \
        t.state.name == "COMPLETE" else None
    params = space.decode(t.params) if space is not None else dict(t.params)
    return {
        "number": t.number, "state": t.state.name.lower(), "values": values, "params": params,
        "epochs_run": attrs.get("epochs_run", 0), "epochs_planned": attrs.get("epochs_planned"),
        "val_accuracy": (attrs.get("val_curve") or [None])[-1],
        "test_accuracy": attrs.get("test_accuracy"), "latency_ms": attrs.get("latency_ms"),
        "size_bytes": attrs.get("size_bytes"), "feasible": attrs.get("feasible"),
        "stopped": attrs.get("stopped"),
        "duration_s": t.duration.total_seconds() if t.duration else None,
        "model_kwargs": attrs.get("model_kwargs"), "train_config": attrs.get("train_config"),
        "run_dir": attrs.get("run_dir"), "steps": attrs.get("steps"),
        "error": attrs.get("error"),
    }


def pareto_rows(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str],
                directions: Sequence[str]) -> list[Mapping[str, Any]]:
    """Non-dominated trials (core.compare.pareto_front on their objective values)."""
    from core.compare import pareto_front

    senses = [(o, "max" if d == "maximize" else "min") for o, d in zip(objectives, directions)]
    values = [dict(r["values"] or {}) for r in rows]
    return [rows[i] for i in pareto_front(values, senses)]


def summarize(study: Any, config: TuneConfig, space: SearchSpace | None = None
              ) -> dict[str, Any]:
    """Best trial(s), Pareto front, the trials table and the epochs spent and saved."""
    space = space or config.search_space()
    rows = [trial_row(t, config.objectives, space) for t in study.get_trials(deepcopy=False)]
    good = [r for r in rows if r["state"] == "complete" and r["feasible"] is not False]
    directions = config.directions
    if config.multi_objective:
        best = sorted(pareto_rows(good, config.objectives, directions),
                      key=lambda r: r["number"])
    elif good:
        key = config.objectives[0]
        pick = max if directions[0] == "maximize" else min
        best = [pick(good, key=lambda r: r["values"][key])]
    else:
        best = []
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    spent = sum(int(r["epochs_run"] or 0) for r in rows)
    planned = sum(int(r["epochs_planned"] or 0) for r in rows)
    stopped = [r for r in rows if r["state"] == "pruned"]
    saved = sum(int(r["epochs_planned"] or 0) - int(r["epochs_run"] or 0) for r in stopped)
    return {
        "objectives": list(config.objectives), "directions": directions,
        "n_trials": len(rows), "counts": counts,
        "best": best, "pareto_front": best if config.multi_objective else [],
        "epochs": {"spent": spent, "planned": planned, "saved": saved,
                   "saved_fraction": saved / planned if planned else 0.0,
                   "early_stopped_trials": len([r for r in stopped
                                                if r["stopped"] != "infeasible"]),
                   "infeasible_trials": len([r for r in stopped
                                             if r["stopped"] == "infeasible"]),
                   "rule": ("multi-objective median rule" if config.multi_objective
                            and config.pruner != "none" else config.pruner)},
        "constraints": config.constraints,
        "trials": rows,
    }


def export_trials_csv(study: Any, path: str | Path, config: TuneConfig | None = None
                      ) -> Path:
    """The trials table as CSV: number, state, one column per objective and parameter, and
    what the studio measured (epochs, latency, size, test accuracy, feasibility)."""
    import pandas as pd

    config = config or TuneConfig.from_dict(study.user_attrs.get("config") or {})
    records = []
    for r in summarize(study, config)["trials"]:
        rec: dict[str, Any] = {"number": r["number"], "state": r["state"]}
        rec.update({f"value_{k}": v for k, v in (r["values"] or {}).items()})
        rec.update({f"param_{k}": v for k, v in r["params"].items()})
        rec.update({k: r[k] for k in ("epochs_run", "epochs_planned", "val_accuracy",
                                      "test_accuracy", "latency_ms", "size_bytes", "feasible",
                                      "stopped", "duration_s")})
        records.append(rec)
    pd.DataFrame.from_records(records).to_csv(path, index=False)
    return Path(path)


def study_yaml(study: Any, config: TuneConfig, space: SearchSpace, url: str, name: str) -> str:
    """A YAML that reproduces the study (``studio tune --config study.yaml``) and lists trials."""
    summary = summarize(study, config, space)
    cfg = config.to_dict()
    # A SQLite file is a path on the machine that ran the study: rerunning the YAML elsewhere
    # uses its own default file; shared storages (PostgreSQL, journal) are kept (masked).
    shared = config.storage is not None and not str(url).startswith("sqlite")
    cfg["storage"] = mask_url(url) if shared else None
    cfg["study_name"] = name
    doc = {
        "schema": STUDY_SCHEMA, "study_name": name,
        "storage": mask_url(url) if shared else f"sqlite ({Path(str(url)).name})",
        "objectives": list(config.objectives), "directions": config.directions,
        "config": cfg,
        "best": [{"number": r["number"], "values": r["values"], "params": r["params"]}
                 for r in summary["best"]],
        "trials": [{"number": r["number"], "state": r["state"], "values": r["values"],
                    "params": r["params"], "epochs_run": r["epochs_run"]}
                   for r in summary["trials"]],
    }
    return yaml.safe_dump(_plain(doc), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def load_study_summary(run_dir: str | Path) -> dict[str, Any]:
    """The ``study`` section of a tune run's report."""
    from core.artifacts import read_report

    report = read_report(run_dir)
    if report.get("operation") != "tune" or "study" not in report:
        raise InvalidParameterError("run", "a tuning run folder", str(run_dir))
    return report["study"]
