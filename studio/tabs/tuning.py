"""Tab "Tuning": Optuna studies over hyper-parameters or architectures, live, resumable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

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
    fig.update_layout(title=f"Optimisation history ({objective})", xaxis_title="trial",
                      yaxis_title=objective, height=320, margin={"l": 50, "r": 20, "t": 50,
                                                                 "b": 40})
    return fig


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
    for make in (vis.plot_parallel_coordinate, vis.plot_param_importances):
        try:
            figures.append(make(study, **kw))
        except Exception:  # too few trials, or one value only
            figures.append(None)
    pareto = None
    if multi and len(objectives) <= 3:
        try:
            pareto = vis.plot_pareto_front(study, target_names=list(objectives))
        except Exception:
            pareto = None
    return figures[0], figures[1], pareto


def _summary(report: dict[str, Any]) -> str:
    study = report["study"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(study["counts"].items()))
    ep = study["epochs"]
    text = (f"Study **{study['study_name']}** ({counts}; "
            f"{'resumed, ' if study['resumed'] else ''}{study['ran_this_time']} run now). "
            f"Epochs spent {ep['spent']} of {ep['planned']} planned — {ep['saved']} saved by "
            f"{ep['rule']}.")
    for row in study["best"][:5]:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in (row["values"] or {}).items())
        text += f"\n\n- best trial **{row['number']}**: {vals}"
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


def _same_data_baseline(ctx: StudioContext, request: Any, study_dir: Path) -> Path | None:
    """The session baseline, if it was trained on the study's data (to compare side by side)."""
    import json

    base = ctx.baseline(request)
    if base is None:
        return None
    mine = json.loads((study_dir / "report.json").read_text()).get("data")
    theirs = json.loads((base / "report.json").read_text()).get("data")
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


def build_tuning_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    samplers = list_methods("tuning")
    with gr.Tab("Tuning", id="tuning", elem_id="tuning-tab") as tab:
        gr.Markdown("Search training hyper-parameters or architectures with Optuna. Studies are "
                    "kept in `studies.db` in your session's folder: give a study name to "
                    "continue it later (finished trials are never lost). Latency is measured, "
                    "not estimated.")
        with gr.Row():
            with gr.Column(scale=1):
                target = gr.Radio(TARGETS, value="hyperparameters", label="Target")
                with gr.Row():
                    family = gr.Dropdown(list_families(), value="cnn", label="Model family")
                    data = gr.Dropdown(list_datasets(), value="digits", label="Data set")
                objectives = gr.CheckboxGroup(list(OBJECTIVES), value=["accuracy"],
                                              label="Objectives (accuracy ↑, latency ↓, "
                                                    "size ↓)")
                with gr.Row():
                    n_trials = gr.Number(8, label="Trials", minimum=1, maximum=500, precision=0)
                    epochs = gr.Number(3, label="Epochs per trial", minimum=1, maximum=100,
                                       precision=0)
                run_btn, stop_btn = run_stop_buttons("Run study")
                with gr.Accordion("Study name, search space, sampler, limits", open=False):
                    study_name = gr.Textbox("", label="Study name (empty: a new study; a name "
                                            "this workspace used before continues it)")
                    space = gr.Code(space_text("hyperparameters", "cnn"), language="yaml",
                                    label="Search space (YAML: float/int with low, high, log; "
                                          "lists are choices)", max_lines=30)
                    with gr.Row():
                        sampler = gr.Dropdown(samplers, value="tpe", label="Sampler")
                        pruner = gr.Dropdown(list(PRUNERS), value="hyperband", label="Pruner")
                    with gr.Row():
                        timeout = gr.Number(0, label="Timeout (s, 0 = none)", minimum=0)
                        seed = gr.Number(0, label="Seed", minimum=0, precision=0)
                    with gr.Row():
                        max_latency = gr.Number(0, label="Max latency b1 (ms, measured; "
                                                "0 = none)", minimum=0)
                        max_size = gr.Number(0, label="Max size (KB on disk; 0 = none)",
                                             minimum=0)
            with gr.Column(scale=2):
                status = gr.Markdown("Edit the space and press Run study.",
                                     elem_classes=["run-status"])
                table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Trials (live)",
                                     interactive=False, max_height=320)
                history = gr.Plot(label="Optimisation history")
                with gr.Row():
                    parallel = gr.Plot(label="Parallel coordinates")
                    importance = gr.Plot(label="Parameter importance")
                pareto = gr.Plot(label="Pareto front (multi-objective)")
                with gr.Row():
                    trial_no = gr.Dropdown([BEST], value=BEST, allow_custom_value=True,
                                           label="Trial to train (a trial number, or the best "
                                           "/ first Pareto trial)")
                    best_btn = gr.Button("Train best → variant")
                best_status = gr.Markdown(elem_classes=["run-status"])
                files = gr.File(label="Export: trials.csv, study.yaml, variant bundle",
                                file_count="multiple")
        study_dir = gr.State(None)

        def on_space(t: str, f: str) -> str:
            return space_text(t, f)

        def on_run(t, f, d, sp, smp, prn, objs, n, tmo, ep, lat, sd, name, kb=0,
                   request: gr.Request = None):
            # One study database per browser session: a study name never reaches another user.
            storage = f"sqlite:///{ctx.session_dir(request) / 'studies.db'}"
            config = call(lambda: make_tune_config(t, f, d, sp, smp, prn, objs, n, tmo, ep, lat,
                                                   sd, name, storage, kb))
            if config.study_name is None:
                config = config.replace(study_name=new_run_id("study"))
            out = ctx.session_dir(request) / "studies" / new_run_id("tune")
            rows: list[dict[str, Any]] = []
            first, direction = config.objectives[0], config.directions[0]

            def work(cb):
                # A recipe study compresses this session's baseline, not a fresh model.
                base = ctx.ensure_baseline(request, cb) if config.target == "recipe" else None
                return tune(base, None, config, out_dir=out, callbacks=cb,
                            measure_options=ctx.measure_options)

            yield (f"▶ Starting study `{config.study_name}`…", gr.skip(), gr.skip(), None, None,
                   None, None, None)
            started = time.monotonic()
            job = tracked(ctx, request, "study", {"study": config.study_name,
                                                   "config": config.to_dict()}, work)
            for kind, payload in stream(job):
                if kind == "progress":
                    yield (progress_line(payload, started), gr.skip(), gr.skip(),
                           gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
                elif kind == "metrics" and payload.get("event") == "trial":
                    rows.append(payload)
                    yield (gr.skip(), pd.DataFrame([table_row(r) for r in rows],
                                                   columns=COLUMNS),
                           history_chart(rows, first, direction), gr.skip(), gr.skip(),
                           gr.skip(), gr.skip(), gr.skip())
                elif kind == "done":
                    report = payload.report
                    all_rows = report["study"]["trials"]
                    par, imp, front = study_charts(storage, config.study_name,
                                                   config.objectives)
                    yield (_summary(report),
                           pd.DataFrame([table_row(r) for r in all_rows], columns=COLUMNS),
                           history_chart(all_rows, first, direction), par, imp, front,
                           [str(out / "trials.csv"), str(out / "study.yaml")], str(out))

        def on_train_best(folder, number, request: gr.Request):
            if not folder:
                raise gr.Error("Run a study first.")
            folder = Path(folder)
            session = ctx.session_dir(request)
            if session not in folder.parents:
                raise gr.Error("That study does not belong to this session.")
            run_dir = ctx.new_run_dir(request, "tune")
            trial = call(lambda: _trial_number(number))

            baseline = _same_data_baseline(ctx, request, folder)

            def work(cb):
                return train_best(folder, out_dir=run_dir, trial=trial,
                                  baseline=baseline, callbacks=cb,
                                  measure_options=ctx.measure_options)

            yield "▶ Training the chosen trial…", gr.skip()
            started = time.monotonic()
            job = tracked(ctx, request, "train-best", {"study": folder.name, "trial": trial},
                          work)
            for kind, payload in stream(job):
                if kind == "progress":
                    yield progress_line(payload, started), gr.skip()
                elif kind == "done":
                    rep = payload.report
                    res, ratios = rep["result"], rep.get("ratios") or {}
                    text = (f"Variant `{run_dir.name}` (trial {rep['config']['trial']}): "
                            f"accuracy **{res['accuracy']:.4f}**, {res['size_bytes'] / 1024:.1f}"
                            f" KB, p50 b1 {res['latency_ms']['1']['p50']:.3f} ms")
                    if ratios.get("speedup_b1"):
                        text += (f"; vs the baseline: speed-up b1 "
                                 f"{speed_label(ratios['speedup_b1'])}, "
                                 f"size {ratios.get('size_reduction') or 0:.2f}×, Δ accuracy "
                                 f"{100 * (ratios.get('accuracy_delta') or 0):+.2f} pt")
                    text += ". It is listed in Comparison."
                    for w in rep.get("warnings", []):
                        text += f"\n\n- ⚠ {w}"
                    zipped = call(lambda: make_bundle(run_dir))
                    extra = [str(folder / "trials.csv"), str(folder / "study.yaml"),
                             str(zipped)]
                    yield text, extra

        target.change(on_space, [target, family], [space], api_visibility="private")
        family.change(on_space, [target, family], [space], api_visibility="private")
        event = run_btn.click(
            on_run, [target, family, data, space, sampler, pruner, objectives, n_trials,
                     timeout, epochs, max_latency, seed, study_name, max_size],
            [status, table, history, parallel, importance, pareto, files, study_dir],
            api_name="tune", show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_tune", ("study",),
                    "finished trials are kept in the study; run it again with the same "
                    "study name to continue.")
        best_event = best_btn.click(on_train_best, [study_dir, trial_no], [best_status, files],
                                    api_name="tune_train_best", show_progress_on=[best_status],
                                    **ctx.engine())
        stop_button(ctx, stop_btn, best_event, best_status, "stop_tune_best",
                    ("train-best",))
    return tab
