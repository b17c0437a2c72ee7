"""Tab "Model & Data": pick or upload a model and data, train the baseline, see its figures."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import pandas as pd

from core.artifacts import server_allows_model_code
from core.data import class_mapping, class_order_warning, list_datasets, load_dataset
from core.models import list_families
from core.runs import benchmark_model, train_baseline
from core.training import TrainConfig
from studio.charts import training_curve, variant_row
from studio.context import StudioContext
from studio.names import MAX_NAME, set_custom_name
from studio.runner import call, first_only, job_events
from studio.train_options import train_option_config, train_option_widgets, training_note
from studio.uploads import store_data_upload, store_model_upload
from studio.widgets import run_stop_buttons, stop_button


def figures_table(report: dict[str, Any], run_id: str) -> pd.DataFrame:
    """The measured figures of one run as a two-column table."""
    row = variant_row(run_id, report)
    return pd.DataFrame({"figure": list(row), "value": [str(v) for v in row.values()]})


def build_model_data_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Model & Data", id="model_data") as tab:
        gr.Markdown("Train a built-in model on a data set (the default is the digits data set "
                    "and a small CNN, trained in seconds), or upload your own model. Its "
                    "figures are measured, and it becomes the baseline for the other tabs.")
        with gr.Row():
            with gr.Column(scale=1):
                family = gr.Dropdown(list_families(), value="cnn", label="Model family")
                dataset = gr.Dropdown(list_datasets(), value="digits", label="Data set")
                epochs = gr.Slider(1, 100, value=10, step=1, label="Epochs")
                lr = gr.Number(0.01, label="Learning rate", minimum=1e-6, maximum=10)
                train_btn, stop_btn = run_stop_buttons("Train baseline")
                options = train_option_widgets()
                with gr.Accordion("Your own data or model", open=False):
                    data_file = gr.File(label="Data: .csv with a label column, or .npz with "
                                        "X and y", file_types=[".csv", ".npz"], height=110,
                                        elem_id="model_data-data-file")
                    label_column = gr.Textbox("label", label="Label column (CSV)")
                    model_file = gr.File(label=_model_label(), height=110,
                                         file_types=[".onnx", ".pt", ".pt2"],  # refused below
                                         elem_id="model_data-model-file")
                    model_data = gr.File(label="Its external data, if any (the "
                                         "model.onnx.data torch wrote beside model.onnx), "
                                         "name unchanged", file_count="multiple", height=90,
                                         elem_id="model_data-model-weights")
                    use_btn = gr.Button("Measure uploaded model")
                    preview = gr.Markdown("")
            with gr.Column(scale=2):
                status = gr.Markdown("No model yet.", elem_id="model_data-status",
                                     elem_classes=["run-status"])
                curve = gr.Plot(label="Training curve")
                table = gr.Dataframe(pd.DataFrame(columns=["figure", "value"]),
                                     label="Measured figures", interactive=False,
                                     elem_id="model_data-figures")

        def on_show(request: gr.Request):
            return show_current(ctx, request)

        def on_preview(upload: str | None, column: str):
            if not upload:
                return gr.skip(), gr.skip()
            data = call(lambda: load_dataset(upload, label_column=column or "label"))
            return data_preview(data, column or "label"), gr.update(value=suggested_family(data))

        def on_train(name, fam, upload, column, n_epochs, rate, precision, accum, ckpt, smooth,
                     mixup, cutmix, schedule, request: gr.Request):
            source = call(lambda: _resolve_data(ctx, request, name, upload, column))
            opts = train_option_config(precision, accum, ckpt, smooth, mixup, cutmix, schedule)
            config = call(lambda: TrainConfig(epochs=int(n_epochs), lr=float(rate), **opts))
            yield from _train(ctx, request, fam, source, column, config)

        def on_use(upload, name, data_upload, column, weights=None,
                   request: gr.Request = None):
            if not upload:
                raise gr.Error("Choose a model file first.")
            yield from _use_upload(ctx, request, [upload, *(weights or [])], name, data_upload,
                                   column)

        train_event = train_btn.click(
            on_train, [dataset, family, data_file, label_column, epochs, lr, *options],
            [status, curve, table], api_name="train_baseline", show_progress_on=[status],
            **ctx.engine())
        use_event = use_btn.click(on_use, [model_file, dataset, data_file, label_column,
                                           model_data],
                                  [status, table], api_name="use_model",
                                  show_progress_on=[status], **ctx.engine())
        stopped = stop_button(
            ctx, stop_btn, [train_event, use_event], status, "stop_train",
            ("train", "benchmark"), text="nothing was saved for this run; your current model "
            "is unchanged.", previous=lambda request: show_current(ctx, request)[0])
        def on_stopped(request: gr.Request):
            return show_current(ctx, request)[1:]  # the curve streamed so far goes

        stopped.then(on_stopped, None, [curve, table], api_visibility="private",
                     show_progress="hidden")
        use_event.failure(forget_refused, [model_file, model_data], [model_file, model_data],
                       api_visibility="private", show_progress="hidden")
        tab.select(on_show, None, [status, curve, table], api_visibility="private")
        if shell is not None:
            shell.on_current(on_show, [], [status, curve, table])
            shell.after(train_event)
            shell.after(use_event)
        data_file.upload(on_preview, [data_file, label_column], [preview, family],
                         api_visibility="private")
    return tab


def _resolve_data(ctx: StudioContext, request: Any, name: str, upload: str | None,
                  column: str) -> str:
    """The uploaded data file (stored and checked now, with a clear message), else ``name``."""
    if upload:
        path = store_data_upload(upload, ctx.session_dir(request) / "uploads",
                                 limit_mb=ctx.upload_limit_mb)
        load_dataset(path, label_column=column)
        return str(path)
    return name


def _train(ctx: StudioContext, request: Any, fam: str, source: str, column: str,
           config: TrainConfig) -> Iterator[tuple[Any, ...]]:
    """Train the baseline as a recorded job: status and live curve (redrawn at most once a
    second), then summary, curve and figures; a failure puts the previous model back."""
    run_dir = ctx.new_run_dir(request, "train")
    history: list[dict[str, float]] = []

    def work(cb):
        data = load_dataset(source, label_column=column, seed=config.seed)
        return train_baseline(fam, data, config, out_dir=run_dir, callbacks=cb,
                              measure_options=ctx.measure_options).report

    previous = show_current(ctx, request)
    record = {"model": fam, "data": Path(str(source)).name, **config.to_dict()}
    first = f"{RUNNING} Training {fam} on {Path(str(source)).stem}…"
    started, shown = time.monotonic(), 0.0
    with keep_previous_on_failure(previous) as restore:
        for kind, payload in job_events(ctx, request, "train", record, work, first=first):
            if kind == "status":
                yield first_only(payload, 3)
            elif kind == "metrics":
                history.append(payload)
                if time.monotonic() - shown < 1.0:  # a redraw per second is enough
                    continue
                shown = time.monotonic()
                yield (f"{RUNNING} Epoch {payload['epoch']}/{config.epochs}: val "
                       f"accuracy {payload['val_accuracy']:.3f} · "
                       f"{time.monotonic() - started:.0f} s elapsed"), \
                    training_curve(history), gr.skip()
            elif kind == "done":
                ctx.set_current(request, run_dir.name)
                yield (_summary("Trained", run_dir.name, payload) + NEXT_STEP,
                       training_curve(history), figures_table(payload, run_dir.name))
    if restore:
        yield restore[0]
        raise restore[0].error


def _use_upload(ctx: StudioContext, request: Any, files: list[str], name: str,
                data_upload: str | None, column: str) -> Iterator[tuple[Any, ...]]:
    """Store and check the model files (an ONNX graph and its external data) and the data,
    then measure them; a refused file's reason stays in the status (the toast goes away)."""
    with keep_previous_on_failure(show_current(ctx, request)) as refused:
        path = call(lambda: store_model_upload(files, ctx.session_dir(request) / "uploads",
                                               limit_mb=ctx.upload_limit_mb))
        source = call(lambda: _resolve_data(ctx, request, name, data_upload, column))
    if refused:
        yield refused[0][0], refused[0][2]
        raise refused[0].error
    shown = upload_title(files[0], data_upload or name)
    yield from _measure_upload(ctx, request, path, source, column, shown)


def forget_refused(model: str | None, weights: list[str] | None) -> tuple[Any, Any]:
    """Empty the file pickers whose files a refusal deleted from the upload cache: measuring
    again would send files that are gone; an empty picker asks for them again."""
    def gone(paths: list[str]) -> bool:
        return any(not Path(p).is_file() for p in paths)

    return (None if model and gone([model]) else gr.skip(),
            None if weights and gone(weights) else gr.skip())


def upload_title(model_upload: str, data: str) -> str:
    """"Uploaded model.onnx on images": the user's own file names (base names), never the
    random names the uploads are stored under."""
    title = f"Uploaded {Path(model_upload).name} on {Path(str(data)).stem}"
    return title if len(title) <= MAX_NAME else title[:MAX_NAME - 1] + "…"


def _measure_upload(ctx: StudioContext, request: Any, path: Path, source: str, column: str,
                    shown: str | None = None) -> Iterator[tuple[Any, ...]]:
    """Measure an uploaded model as a recorded job, named ``shown`` in this workspace; a
    failure puts the previous model back."""
    run_dir = ctx.new_run_dir(request, "benchmark")
    previous = show_current(ctx, request)
    record = {"model": shown or path.name, "data": Path(str(source)).name}

    def work(cb):
        return benchmark_model(path, load_dataset(source, label_column=column), out_dir=run_dir,
                               callbacks=cb, measure_options=ctx.measure_options).report

    with keep_previous_on_failure(previous) as restore:
        for kind, payload in job_events(ctx, request, "benchmark", record, work,
                                        first=f"{RUNNING} Measuring {shown or path.name}…"):
            if kind == "status":
                yield first_only(payload, 2)
            elif kind == "done":
                if shown:
                    set_custom_name(ctx.session_dir(request), run_dir.name, shown)
                ctx.set_current(request, run_dir.name)
                yield (_summary("Measured", run_dir.name, payload) + NEXT_STEP,
                       figures_table(payload, run_dir.name))
    if restore:
        yield restore[0][0], restore[0][2]
        raise restore[0].error


RUNNING = "▶"
NEXT_STEP = ("\n\n> **Next step:** open **Auto** and press *Optimise*: it tries pruning, INT8 "
             "and their combinations on this model, measures them side by side and picks the "
             "best within 1 point of accuracy. Or try one method in **Quantization** or "
             "**Pruning**.")


class Restore(tuple):
    """The outputs to put back after a failed run, and the error to raise then."""

    error: BaseException


@contextlib.contextmanager
def keep_previous_on_failure(previous: tuple[Any, ...]) -> Iterator[list[Any]]:
    """Catch a failed run's ``gr.Error``; the caller then shows ``previous`` (what the user
    had before, with the failure on top) and re-raises it."""
    holder: list[Any] = []
    try:
        yield holder
    except gr.Error as exc:
        head = "**Stopped**" if str(exc.message).startswith("Stopped") else "**Failed**"
        reason = str(exc.message).removeprefix("Stopped — ")
        restore = Restore((f"{head} — {reason} Your current model is unchanged."
                           f"\n\n{previous[0]}", *previous[1:]))
        restore.error = exc
        holder.append(restore)


def show_current(ctx: StudioContext, request: Any) -> tuple[Any, Any, Any]:
    """Status, training curve and figures of the workspace's current model."""
    current = ctx.current(request)
    if current is None:
        return ("No model yet: press **Train baseline** (digits + a small CNN, seconds), or "
                "upload your own below.", None, pd.DataFrame(columns=["figure", "value"]))
    report = json.loads((current / "report.json").read_text())
    history = (report.get("training") or {}).get("history") or []
    verb = "Trained" if report.get("operation") == "train" else "Measured"
    head = f"Current model: **{ctx.display_name(request, current, report)}**.\n\n"
    try:
        text = head + _summary(verb, current.name, report)
    except (KeyError, TypeError):
        text = head + f"`{current.name}`"
    return (text, training_curve(history) if history else None,
            figures_table(report, current.name))


def data_preview(data: Any, column: str) -> str:
    """What an uploaded data file holds, and the model family suggested for it."""
    import numpy as np

    rows = len(data.y_train) + len(data.y_val) + len(data.y_test)
    features = int(np.prod(data.X_train.shape[1:]))
    family = suggested_family(data)
    why = "image-shaped inputs" if family == "cnn" else "tabular data"
    warning = class_order_warning(data.class_names)
    return (f"**Preview**: {rows:,} rows, {features} feature column(s), "
            f"{len(data.class_names)} classes (index = label: {class_mapping(data.class_names)}"
            f"), label column `{column}`. "
            f"Suggested model family: **{family}** ({why}; picked above). This file is used "
            "instead of the Data set picker while it is chosen; press Train baseline, or "
            "Measure uploaded model for a model of your own."
            + (f"\n\n⚠ {warning}" if warning else ""))


def suggested_family(data: Any) -> str:
    """cnn for image-shaped inputs (channels × height × width), mlp for feature rows."""
    return "cnn" if len(data.X_train.shape) >= 4 and "cnn" in list_families() else "mlp"


def _summary(verb: str, run_id: str, report: dict[str, Any]) -> str:
    res = report["result"]
    text = (f"**{verb}** `{run_id}`: accuracy **{res['accuracy']:.4f}**, macro F1 "
            f"{res['f1_macro']:.4f}, {res['params']:,} parameters, "
            f"{res['size_bytes'] / 1024:.1f} KB, p50 at batch 1 "
            f"{res['latency_ms']['1']['p50']:.3f} ms ({res['threads']} thread).")
    parity = report.get("onnx_parity_max_abs_diff")
    if parity is not None:
        text += f" ONNX export parity: max |Δ| = {parity:.2e}."
    return text + training_note(report)


def _model_label() -> str:
    """What this server takes: ONNX only, unless its operator allows model code."""
    if server_allows_model_code():
        return "Model: .onnx, TorchScript .pt or torch.export .pt2"
    return ("Model: .onnx (TorchScript and .pt2 run code when loaded, so this server takes "
            "ONNX: torch.onnx.export(model, (x,), 'model.onnx'))")
