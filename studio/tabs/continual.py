"""Tab "Continual": learn a task sequence with replay, optimizing after each task, measured."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core.continual import PRUNE_METHODS, ContinualConfig, continual, plot_efficiency_over_tasks
from core.registry import list_methods
from studio.charts import phone_panels
from studio.context import StudioContext
from studio.runner import call, first_only, job_events
from studio.tabs.jobs import job_config
from studio.widgets import run_stop_buttons, stop_button

BUILTIN_SEQUENCES = ["split-digits", "permuted-digits"]
NONE = "none"


def tasks_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per task: average accuracy, forgetting, BWT, size, latency, sparsity."""
    rows = []
    for r in report["continual"]["tasks"]:
        lat = r["latency_ms"]
        rows.append({
            "after task": r["task"], "task": r["name"],
            "average accuracy": round(r["average_accuracy"], 4),
            "forgetting": None if r["forgetting"] is None else round(r["forgetting"], 4),
            "backward transfer": None if r["backward_transfer"] is None
            else round(r["backward_transfer"], 4),
            "size (KB)": round(r["size_bytes"] / 1024, 1),
            "p50 b1 (ms)": round(lat.get("1", {}).get("p50", float("nan")), 3),
            "p50 b64 (ms)": round(lat.get("64", {}).get("p50", float("nan")), 3),
            "sparsity": None if r["sparsity_target"] is None else round(r["sparsity_target"], 3),
            "non-zero params": r["nonzero_params"], "replay rows": r["replay_rows"]})
    return pd.DataFrame(rows)


def matrix_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The accuracy matrix: row i = after task i, column j = accuracy on task j."""
    matrix = report["continual"]["accuracy_matrix"]
    return pd.DataFrame(
        [[f"after task {i + 1}"] + [None if v is None else round(v, 4) for v in row]
         for i, row in enumerate(matrix)],
        columns=["", *[f"task {j + 1}" for j in range(len(matrix))]])


def summary_text(report: dict[str, Any], run_id: str) -> str:
    c = report["continual"]
    fgt, bwt = c["forgetting"], c["backward_transfer"]
    text = (f"**Done** `{run_id}`: {len(c['tasks'])} tasks, final average accuracy "
            f"**{c['average_accuracy']:.3f}**, forgetting {fgt:.3f}, backward transfer "
            f"{bwt:+.3f}; last task's artifact {report['result']['size_bytes'] / 1024:.1f} KB.")
    return text + "".join(f"\n\n⚠ {w}" for w in report.get("warnings", []))


def build_continual_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Continual", id="continual", elem_id="continual-tab") as tab:
        gr.Markdown("Learn tasks one after another (class-incremental split digits, or "
                    "permuted digits) with an experience-replay buffer, optionally pruning "
                    "and/or quantizing after each task. Every task's artifact is scored on "
                    "every task seen (the accuracy matrix) and timed side by side.")
        with gr.Row():
            with gr.Column(scale=1):
                sequence = gr.Dropdown(BUILTIN_SEQUENCES, value="split-digits",
                                       label="Task sequence")
                n_tasks = gr.Slider(2, 10, value=5, step=1, label="Tasks")
                family = gr.Dropdown(["cnn", "mlp", "vit"], value="cnn", label="Model family")
                replay = gr.Number(200, label="Replay buffer rows (0 = no replay)", precision=0,
                                   minimum=0)
                epochs = gr.Slider(1, 50, value=5, step=1, label="Epochs per task")
                run_btn, stop_btn = run_stop_buttons("Run sequence")
                with gr.Accordion("Optimize after each task", open=False):
                    prune = gr.Dropdown([NONE, *PRUNE_METHODS], value=NONE,
                                        label="Pruning (sparsity grows across tasks)")
                    sparsity = gr.Slider(0.05, 0.95, value=0.5, step=0.05,
                                         label="Sparsity at the last task")
                    quantize = gr.Dropdown([NONE, *list_methods("quantization")], value=NONE,
                                           label="Quantize a copy after each task")
                    lr = gr.Number(0.01, label="Learning rate", minimum=1e-6, maximum=10)
            with gr.Column(scale=2):
                status = gr.Markdown("Choose a sequence and press Run.",
                                     elem_classes=["run-status"])
                plot = gr.Plot(label="Efficiency over tasks")
                table = gr.Dataframe(label="Per task", interactive=False)
                matrix = gr.Dataframe(label="Accuracy matrix (row: after task i; column: "
                                      "task j)", interactive=False)
                files = gr.File(label="Download: report.json, tasks.csv", file_count="multiple")

        def on_run(seq, n, fam, rows, n_epochs, prune_m, sp, quant, rate, request: gr.Request):
            config = call(lambda: ContinualConfig(
                sequence=seq, n_tasks=int(n), model=fam, replay_size=int(rows or 0),
                epochs=int(n_epochs), prune=None if prune_m == NONE else prune_m,
                sparsity=float(sp), quantize=None if quant == NONE else quant,
                lr=float(rate)))
            run_dir = ctx.new_run_dir(request, "continual")

            def work(cb):
                return continual(None, None, config, out_dir=run_dir, callbacks=cb,
                                 measure_options=getattr(ctx, "measure_options", None))

            record = job_config(None, config)
            for kind, payload in job_events(ctx, request, "continual", record, work):
                if kind == "status":
                    yield first_only(payload, 5)
                elif kind == "done":
                    report = payload.report
                    yield (summary_text(report, run_dir.name),
                           phone_panels(plot_efficiency_over_tasks(report)), tasks_frame(report),
                           matrix_frame(report),
                           [str(run_dir / "report.json"), str(run_dir / "tasks.csv")])

        event = run_btn.click(
            on_run, [sequence, n_tasks, family, replay, epochs, prune, sparsity, quantize, lr],
            [status, plot, table, matrix, files], api_name="continual",
            show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_continual", ("continual",))
    return tab
