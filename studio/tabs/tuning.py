"""Tab "Tuning": Optuna studies over hyper-parameters or architectures, live, resumable."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import yaml

from core.artifacts import make_bundle, new_run_id
from core.data import list_datasets
from core.errors import InvalidParameterError
from core.measure import speed_label
from core.models import list_families
from core.registry import list_methods
from core.tuning import OBJECTIVES, PRUNERS, TuneConfig, default_space, train_best, tune
from studio.context import StudioContext
from studio.runner import call, stream
from studio.tabs.jobs import tracked
from studio.widgets import progress_line, run_stop_buttons, stop_button, warnings_markdown

TARGETS = ["hyperparameters", "architecture", "recipe"]
COLUMNS = ["trial", "state", "accuracy", "latency (ms)", "size (KB)", "epochs", "stopped",
           "params"]
# The default study: 10 trials of as many epochs as a default baseline (TrainConfig: 10), the
# baseline's own settings as trial 0. Measured here on digits + cnn (2 loaded cores): ~1 min
# of trials and ~15 s to train the best, which beat the baseline by +1.1 pt on the test split.
DEFAULT_TRIALS = 10
DEFAULT_EPOCHS = 10
PARALLEL_DIMS = 3  # the parallel-coordinate chart shows the most important parameters only


def space_text(target: str, family: str) -> str:
    """The shipped space for a target and family, as editable YAML."""
    return yaml.safe_dump(default_space(target, family), sort_keys=False,
                          default_flow_style=None)


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """One live-table row from a trial row (core.tuning.trial_row)."""
    values = row.get("values") or {}
    size = values.get("size", row.get("size_bytes"))
    acc = values.get("accuracy", row.get("val_accuracy"))
    lat = values.get("latency", row.get("latency_ms"))
    return {"trial": row["number"], "state": row["state"],
            "accuracy": round(acc, 4) if isinstance(acc, float) else None,
            "latency (ms)": round(lat, 4) if isinstance(lat, float) else None,
            "size (KB)": round(size / 1024, 1) if size else None,
            "epochs": f"{row.get('epochs_run') or 0}/{row.get('epochs_planned') or 0}",
            "stopped": row.get("stopped") or "",
            "params": ", ".join(f"{k}={_short(v)}" for k, v in (row.get("params") or {}).items())}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def history_chart(rows: Sequence[dict[str, Any]], objective: str, direction: str) -> go.Figure:
    """Objective per trial and best so far (updated live while the study runs)."""
    done = [r for r in rows if (r.get("values") or {}).get(objective) is not None]
    xs = [r["number"] for r in done]
    ys = [r["values"][objective] for r in done]
    best, cur = [], None
    for y in ys:
        cur = y if cur is None else (max(cur, y) if direction == "maximize" else min(cur, y))
        best.append(cur)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=objective))
    fig.add_trace(go.Scatter(x=xs, y=best, mode="lines", name="best so far"))
    fig.update_layout(title={"text": f"History ({objective})", "font": {"size": 14}},
                      xaxis_title="trial", yaxis_title=objective, height=320,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    # Whole trial numbers only, half a trial of room each side (one trial: no "−1" tick).
    low, high = min(xs, default=0), max(xs, default=0)
    fig.update_xaxes(dtick=max(1, -(-(high - low + 1) // 8)), tick0=0,
                     range=[low - 0.5, high + 0.5])
    fig.update_yaxes(nticks=6, tickformat=".3~g")
    if len(set(ys)) == 1:  # one value: a narrow band around it (plotly drew 0..1.5 for 0.97)
        pad = abs(ys[0]) * 0.02 or 1.0
        fig.update_yaxes(range=[ys[0] - pad, ys[0] + pad])
    return fig


def parallel_chart(study: Any, target_name: str, multi: bool) -> Any:
    """Optuna's parallel-coordinate figure, readable on a phone: the most important
    parameters only, no colour bar (the objective has its own axis), small value labels."""
    import optuna.visualization as vis

    params = _top_params(study, target_name if multi else None)
    target = (lambda t: t.values[0]) if multi else None
    fig = vis.plot_parallel_coordinate(study, params=params, target=target,
                                       target_name=target_name)
    fig.update_traces(marker={"showscale": False})
    fig.update_annotations(font={"size": 9})
    fig.update_xaxes(tickangle=-20, tickfont={"size": 11})
    fig.update_layout(title={"text": "Parameters of each trial", "font": {"size": 14}},
                      height=360, margin={"l": 60, "r": 40, "t": 50, "b": 70})
    return fig


def _top_params(study: Any, target_name: str | None) -> list[str] | None:
    """The PARALLEL_DIMS most important parameters (all when there are few)."""
    import optuna

    names = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    if len(names) <= PARALLEL_DIMS:
        return None
    try:
        target = (lambda t: t.values[0]) if target_name else None
        ranked = list(optuna.importance.get_param_importances(study, target=target))
    except Exception:  # too few trials to rank: keep the space's order
        ranked = names
    return ranked[:PARALLEL_DIMS]


def study_charts(storage: str, study_name: str, objectives: Sequence[str]
                 ) -> tuple[Any, Any, Any]:
    """Optuna's parallel-coordinate, parameter-importance and Pareto-front figures."""
    import optuna
    import optuna.visualization as vis

    from core.tuning import open_storage

    study = optuna.load_study(study_name=study_name,
                              storage=open_storage(storage, heartbeat_s=None))
    multi = len(objectives) > 1
    kw = {"target": (lambda t: t.values[0]), "target_name": objectives[0]} if multi else {}
    figures = []
    for make in (lambda: parallel_chart(study, objectives[0], multi),
                 lambda: vis.plot_param_importances(study, **kw)):
        try:
            figures.append(make())
        except Exception:  # too few trials, or one value only
            figures.append(None)
    if figures[1] is not None:
        figures[1].update_layout(title={"text": "Parameter importance", "font": {"size": 14}})
    pareto = None
    if multi and len(objectives) <= 3:
        try:
            pareto = vis.plot_pareto_front(study, target_names=list(objectives))
        except Exception:
            pareto = None
    return figures[0], figures[1], pareto


def _summary(report: dict[str, Any], trial0: str = "") -> str:
    study = report["study"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(study["counts"].items()))
    ep = study["epochs"]
    text = (f"Study **{study['study_name']}** ({counts}; "
            f"{'resumed, ' if study.get('finished_before') else ''}"
            f"{study['ran_this_time']} run now). "
            f"Epochs spent {ep['spent']} of {ep['planned']} planned — {ep['saved']} saved by "
            f"{ep['rule']}.{trial0}")
    for row in study["best"][:5]:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in (row["values"] or {}).items())
        text += f"\n\n- best trial **{row['number']}**: {vals}"
    if study["best"]:
        text += "\n\nPress **Train best → variant** to train it and measure it against the " \
                "current model."
    return text + warnings_markdown(report)


def make_tune_config(target: str, family: str, data: str, space: str, sampler: str,
                     pruner: str, objectives: Sequence[str], n_trials: float, timeout: float,
                     epochs: float, max_latency: float, seed: float, study: str,
                     storage: str, max_size_kb: float | None = None) -> TuneConfig:
    """Widget values → a validated TuneConfig (errors name the bad widget)."""
    from core.tuning import parse_space

    spec = parse_space(space or "").to_dict()
    return TuneConfig(
        target=target, model=family, data=data, space=spec, sampler=sampler, pruner=pruner,
        objectives=tuple(objectives or ()), n_trials=int(n_trials or 1),
        timeout_s=float(timeout) if timeout else None, epochs=int(epochs or 1),
        max_latency_ms=float(max_latency) if max_latency else None, seed=int(seed or 0),
        max_size_bytes=int(float(max_size_kb) * 1024) if max_size_kb else None,
        study_name=(study or "").strip() or None, storage=storage,
        latency_budget_s=0.05)


# --- trial 0: the current model's own settings ----------------------------------------------
def _family_defaults(family: str) -> dict[str, Any]:
    """What a model of the family is built with when nothing is given."""
    import inspect

    from core.models import CNN, DEFAULTS, MLP, ViT

    cls = {"cnn": CNN, "mlp": MLP, "vit": ViT}.get(family)
    found = {k: p.default for k, p in inspect.signature(cls).parameters.items()
             if p.default is not inspect.Parameter.empty} if cls else {}
    return {**found, **DEFAULTS.get(family, {})}


def baseline_params(space: Mapping[str, Any], family: str,
                    report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Trial 0 of a hyper-parameter study: each searched parameter at the current model's
    value (its report when it is a ``family`` model, else the training and family defaults),
    so the study's best is never worse than it on validation. None when a parameter has no
    such value or it lies outside the space."""
    from core.training import TrainConfig
    from core.tuning import parse_space

    config = dict((report or {}).get("config") or {})
    if config.get("model", family) != family:
        config = {}
    values = {**_family_defaults(family), **(config.get("model_kwargs") or {}),
              **TrainConfig().to_dict(), **{k: v for k, v in config.items()
                                            if k != "model_kwargs"}}
    channels = list(values.get("channels") or [])
    if family == "cnn" and len(channels) == 2 and channels[1] == 2 * channels[0]:
        values["width"] = channels[0]  # arch_kwargs: width × growth 2, depth 2
    parsed = parse_space(dict(space))
    params = {}
    for name in parsed.names:
        dim, value = parsed[name], values.get(name)
        if dim.kind == "categorical":
            if value not in list(dim.choices):
                return None
            value = dim.encoded_choices()[list(dim.choices).index(value)]
        elif not isinstance(value, (int, float)) or not dim.low <= value <= dim.high:
            return None
        params[name] = value
    return params


def _same_data_report(ctx: StudioContext, request: Any, data: str) -> dict[str, Any] | None:
    """The current model's report when it was made on the data set ``data``."""
    import json

    base = ctx.current(request)
    if base is None:
        return None
    report = json.loads((base / "report.json").read_text())
    return report if (report.get("data") or {}).get("source") == data else None


def enqueue_trial0(config: TuneConfig, out: Path, params: dict[str, Any] | None) -> None:
    """Queue ``params`` as the first trial of a new study (a resumed one keeps its trials)."""
    from core.tuning import open_study

    if params is None:
        return
    study, _url, _name, existed = open_study(config, out_dir=out)
    if not existed and not study.trials:
        study.enqueue_trial(params)


def _same_data_baseline(ctx: StudioContext, request: Any, study_dir: Path) -> Path | None:
    """The current model, if it was made on the study's data (to compare side by side)."""
    import json

    from core.data import spec_inputs

    base = ctx.current(request)
    if base is None:
        return None
    mine, theirs = (spec_inputs(json.loads((d / "report.json").read_text()).get("data"))
                    for d in (study_dir, base))
    return base if mine == theirs else None


BEST = "best"


def _trial_number(value: Any) -> int | None:
    """The trial box: "best"/empty is None, otherwise a trial number."""
    if value is None or str(value).strip().lower() in ("", BEST):
        return None
    try:
        return int(float(value))
    except ValueError:
        raise InvalidParameterError("trial", "a trial number, or 'best'", value) from None


def gain_text(report: Mapping[str, Any], baseline_name: str | None) -> str:
    """The headline of a trained trial: what it gained (or lost) against the current model,
    both measured in the same run on the test split."""
    res, base = report["result"], report.get("baseline") or {}
    if baseline_name is None or base.get("accuracy") is None:
        return (f"Accuracy **{res['accuracy']:.4f}** on the test split (no current model on "
                "this data set to compare with).")
    delta = 100 * (res["accuracy"] - base["accuracy"])
    figures = f"{base['accuracy']:.4f} → {res['accuracy']:.4f} on the test split"
    if delta > 0:
        return f"### {delta:+.2f} pt accuracy over {baseline_name}\n\n({figures})"
    if delta == 0:
        return (f"### Same accuracy as {baseline_name}\n\n({figures}: no trial beat it; "
                "try more trials or a wider space)")
    return (f"### {delta:+.2f} pt accuracy against {baseline_name}\n\n({figures}: the trial "
            "was best on the validation split, not on the test split)")


def _trained_text(rep: Mapping[str, Any], run_name: str, baseline_name: str | None) -> str:
    res, ratios = rep["result"], rep.get("ratios") or {}
    text = (f"{gain_text(rep, baseline_name)}\n\nVariant `{run_name}` (trial "
            f"{rep['config']['trial']}): {res['size_bytes'] / 1024:.1f} KB, p50 b1 "
            f"{res['latency_ms']['1']['p50']:.3f} ms")
    if ratios.get("speedup_b1"):
        text += (f"; vs the current model: speed-up b1 {speed_label(ratios['speedup_b1'])}, "
                 f"size {ratios.get('size_reduction') or 0:.2f}×")
    text += ". It is listed in Comparison."
    return text + "".join(f"\n\n- ⚠ {w}" for w in rep.get("warnings", []))


# --- the tab ---------------------------------------------------------------------------------
def _form() -> SimpleNamespace:
    """The left column: what to search, the Run/Stop buttons, advanced options folded."""
    w = SimpleNamespace()
    w.target = gr.Radio(TARGETS, value="hyperparameters", label="Target")
    with gr.Row():
        w.family = gr.Dropdown(list_families(), value="cnn", label="Model family")
        w.data = gr.Dropdown(list_datasets(), value="digits", label="Data set")
    w.objectives = gr.CheckboxGroup(list(OBJECTIVES), value=["accuracy"],
                                    label="Objectives (accuracy ↑, latency ↓, size ↓)")
    with gr.Row():
        w.n_trials = gr.Number(DEFAULT_TRIALS, label="Trials", minimum=1, maximum=500,
                               precision=0)
        w.epochs = gr.Number(DEFAULT_EPOCHS, label="Epochs per trial", minimum=1,
                             maximum=100, precision=0)
    w.run_btn, w.stop_btn = run_stop_buttons("Run study")
    with gr.Accordion("Study name, search space, sampler, limits", open=False):
        w.study_name = gr.Textbox("", label="Study name (empty: a new study; a name this "
                                  "workspace used before continues it)")
        w.space = gr.Code(space_text("hyperparameters", "cnn"), language="yaml",
                          label="Search space (YAML: float/int with low, high, log; lists are "
                                "choices)", max_lines=30)
        with gr.Row():
            w.sampler = gr.Dropdown(list_methods("tuning"), value="tpe", label="Sampler")
            w.pruner = gr.Dropdown(list(PRUNERS), value="hyperband", label="Pruner")
        with gr.Row():
            w.timeout = gr.Number(0, label="Timeout (s, 0 = none)", minimum=0)
            w.seed = gr.Number(0, label="Seed", minimum=0, precision=0)
        with gr.Row():
            w.max_latency = gr.Number(0, label="Max latency b1 (ms, measured; 0 = none)",
                                      minimum=0)
            w.max_size = gr.Number(0, label="Max size (KB on disk; 0 = none)", minimum=0)
    return w


def _results(w: SimpleNamespace) -> None:
    """The right column: status, live table, charts, train-best and exports."""
    w.status = gr.Markdown("Press Run study (trial 0 repeats the current model's settings, "
                           "so the best cannot be worse on validation).",
                           elem_classes=["run-status"])
    w.table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Trials (live)",
                           interactive=False, max_height=320)
    with gr.Row():
        w.history = gr.Plot(label="Optimisation history")
        w.importance = gr.Plot(label="Parameter importance")
    w.parallel = gr.Plot(label="Parallel coordinates")
    w.pareto = gr.Plot(label="Pareto front (multi-objective)")
    with gr.Row():
        w.trial_no = gr.Dropdown([BEST], value=BEST, allow_custom_value=True,
                                 label="Trial to train (a trial number, or the best / first "
                                 "Pareto trial)")
        w.best_btn = gr.Button("Train best → variant")
    w.best_status = gr.Markdown(elem_classes=["run-status"])
    w.files = gr.File(label="Export: trials.csv, study.yaml, variant bundle",
                      file_count="multiple")


def _study_config(ctx: StudioContext, request: Any, values: Sequence[Any]
                  ) -> tuple[TuneConfig, Path, dict[str, Any] | None]:
    """(config, run folder, trial-0 params) for a Run study press."""
    t, f, d, sp, smp, prn, objs, n, tmo, ep, lat, sd, name, kb = values
    # One study database per browser session: a study name never reaches another user.
    storage = f"sqlite:///{ctx.session_dir(request) / 'studies.db'}"
    config = call(lambda: make_tune_config(t, f, d, sp, smp, prn, objs, n, tmo, ep, lat, sd,
                                           name, storage, kb))
    if config.study_name is None:
        config = config.replace(study_name=new_run_id("study"))
    out = ctx.session_dir(request) / "studies" / new_run_id("tune")
    trial0 = None
    if config.target == "hyperparameters":
        trial0 = baseline_params(config.space or {}, config.model,
                                 _same_data_report(ctx, request, config.data))
    return config, out, trial0


def _trial0_note(trial0: dict[str, Any] | None, config: TuneConfig) -> str:
    if config.target != "hyperparameters":
        return ""
    if trial0 is None:
        return (" Trial 0 is not the current model: its settings lie outside the searched "
                "space.")
    return " Trial 0 repeats the current model's settings for the searched parameters."


def _run_handler(ctx: StudioContext) -> Any:
    def on_run(t, f, d, sp, smp, prn, objs, n, tmo, ep, lat, sd, name, kb=0,
               request: gr.Request = None):
        config, out, trial0 = _study_config(
            ctx, request, (t, f, d, sp, smp, prn, objs, n, tmo, ep, lat, sd, name, kb))
        rows: list[dict[str, Any]] = []
        first, direction = config.objectives[0], config.directions[0]

        def work(cb):
            # A recipe study compresses this session's baseline, not a fresh model.
            base = ctx.ensure_baseline(request, cb) if config.target == "recipe" else None
            enqueue_trial0(config, out, trial0)
            return tune(base, None, config, out_dir=out, callbacks=cb,
                        measure_options=ctx.measure_options)

        skip = (gr.skip(),) * 7
        yield (f"▶ Starting study `{config.study_name}`…", *skip[:2], None, None, None, None,
               None)
        started = time.monotonic()
        job = tracked(ctx, request, "study", {"study": config.study_name,
                                               "config": config.to_dict()}, work)
        for kind, payload in stream(job):
            if kind == "progress":
                yield (progress_line(payload, started), *skip)
            elif kind == "metrics" and payload.get("event") == "trial":
                rows.append(payload)
                yield (gr.skip(), pd.DataFrame([table_row(r) for r in rows], columns=COLUMNS),
                       history_chart(rows, first, direction), *skip[:5])
            elif kind == "done":
                report = payload.report
                all_rows = report["study"]["trials"]
                par, imp, front = study_charts(config.storage, config.study_name,
                                               config.objectives)
                yield (_summary(report, _trial0_note(trial0, config)),
                       pd.DataFrame([table_row(r) for r in all_rows], columns=COLUMNS),
                       history_chart(all_rows, first, direction), par, imp, front,
                       [str(out / "trials.csv"), str(out / "study.yaml")], str(out))

    return on_run


def _train_best_handler(ctx: StudioContext) -> Any:
    def on_train_best(folder, number, request: gr.Request):
        if not folder:
            raise gr.Error("Run a study first.")
        folder = Path(folder)
        if ctx.session_dir(request) not in folder.parents:
            raise gr.Error("That study does not belong to this session.")
        run_dir = ctx.new_run_dir(request, "tune")
        trial = call(lambda: _trial_number(number))
        baseline = _same_data_baseline(ctx, request, folder)
        name = None
        if baseline is not None:
            import json

            name = ctx.display_name(request, baseline,
                                    json.loads((baseline / "report.json").read_text()))

        def work(cb):
            return train_best(folder, out_dir=run_dir, trial=trial, baseline=baseline,
                              callbacks=cb, measure_options=ctx.measure_options)

        yield "▶ Training the chosen trial…", gr.skip()
        started = time.monotonic()
        job = tracked(ctx, request, "train-best", {"study": folder.name, "trial": trial},
                      work)
        for kind, payload in stream(job):
            if kind == "progress":
                yield progress_line(payload, started), gr.skip()
            elif kind == "done":
                zipped = call(lambda: make_bundle(run_dir))
                yield (_trained_text(payload.report, run_dir.name, name),
                       [str(folder / "trials.csv"), str(folder / "study.yaml"), str(zipped)])

    return on_train_best


def _wire(ctx: StudioContext, w: SimpleNamespace, study_dir: Any) -> None:
    """Events: the space follows target and family; Run, Train best and their Stop."""
    def on_space(t: str, f: str) -> str:
        return space_text(t, f)

    w.target.change(on_space, [w.target, w.family], [w.space], api_visibility="private")
    w.family.change(on_space, [w.target, w.family], [w.space], api_visibility="private")
    event = w.run_btn.click(
        _run_handler(ctx),
        [w.target, w.family, w.data, w.space, w.sampler, w.pruner, w.objectives, w.n_trials,
         w.timeout, w.epochs, w.max_latency, w.seed, w.study_name, w.max_size],
        [w.status, w.table, w.history, w.parallel, w.importance, w.pareto, w.files,
         study_dir], api_name="tune", show_progress_on=[w.status], **ctx.engine())
    stop_button(ctx, w.stop_btn, event, w.status, "stop_tune", ("study",),
                "finished trials are kept in the study; run it again with the same "
                "study name to continue.")
    best_event = w.best_btn.click(_train_best_handler(ctx), [study_dir, w.trial_no],
                                  [w.best_status, w.files], api_name="tune_train_best",
                                  show_progress_on=[w.best_status], **ctx.engine())
    stop_button(ctx, w.stop_btn, best_event, w.best_status, "stop_tune_best",
                ("train-best",))


def build_tuning_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Tuning", id="tuning", elem_id="tuning-tab") as tab:
        gr.Markdown("Search training hyper-parameters or architectures with Optuna. Studies are "
                    "kept in `studies.db` in your session's folder: give a study name to "
                    "continue it later (finished trials are never lost). Latency is measured, "
                    "not estimated.")
        with gr.Row():
            with gr.Column(scale=1):
                w = _form()
            with gr.Column(scale=2):
                _results(w)
        study_dir = gr.State(None)
        _wire(ctx, w, study_dir)
    return tab
