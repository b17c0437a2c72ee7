"""Tab "Auto": propose recipes for this hardware, run and measure them, pick and explain."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pandas as pd

from core.auto import CANDIDATE_NAMES, TARGETS, AutoConfig
from core.measure import speed_label
from studio.charts import comparison_charts
from studio.context import StudioContext
from studio.runner import call, stream
from studio.tabs.jobs import tracked
from studio.widgets import (
    AUTO,
    INPUT_LABEL,
    auto_or,
    follow_current,
    input_note,
    progress_line,
    run_stop_buttons,
    stop_button,
    variant_update,
)

EXAMPLE_RECIPE = """name: prune-finetune-int8
model: cnn
data: digits
steps:
  - train: {epochs: 5}
  - prune: {method: structured-l2, sparsity: 0.5, finetune_epochs: 3}
  - quantize: {method: ort-static-int8}
  - export: {}
"""


def candidates_frame(report: dict[str, Any]) -> pd.DataFrame:
    info = report["auto"]
    why = {e["name"]: e["why_lost"] for e in info["losers"]}
    rows = []
    for c in info["candidates"]:
        rows.append({"candidate": c["name"], "winner": c["name"] == info["winner"],
                     "speed-up b64": _r(c.get("speedup_b64")),
                     "speed-up b1": _r(c.get("speedup_b1")),
                     "size reduction": _r(c.get("size_reduction")),
                     "val accuracy": _r(c.get("val_accuracy"), 4),
                     "test accuracy": _r(c.get("accuracy"), 4),
                     "Pareto": c.get("pareto"),
                     "why it lost": why.get(c["name"], "")})
    for e in info["failed"] + info["skipped"]:
        rows.append({"candidate": e["name"], "winner": False,
                     "why it lost": why.get(e["name"], "")})
    return pd.DataFrame(rows)


def live_row(event: dict[str, Any]) -> dict[str, Any]:
    """A candidate as soon as it has run (before the side-by-side measurement)."""
    drop = event.get("val_drop")
    return {"candidate": event["name"],
            "state": "failed" if event.get("error") else "ran — measured at the end",
            "val accuracy": _r(event.get("val_accuracy"), 4),
            "val drop (pt)": _r(100 * drop, 2) if isinstance(drop, (int, float)) else None,
            "note": event.get("error") or event.get("why") or ""}


def _r(value: Any, digits: int = 2) -> Any:
    return round(value, digits) if isinstance(value, (int, float)) else None


INTRO = ("The auto-optimizer reads this machine's hardware (instruction sets such as AVX-512 "
         "VNNI or AMX, cores, CUDA), proposes candidate recipes suited to it (structured "
         "pruning + fine-tuning + static INT8, distillation + INT8, FP16 only where the "
         "hardware computes it natively…), runs them, re-measures all of them side by side, "
         "and picks the best one on the Pareto front within your accuracy tolerance — and "
         "says why.")


def _form(w: SimpleNamespace) -> None:
    """The left column: input, target, tolerance, deployment, candidates, Run/Stop."""
    w.source = gr.Dropdown([], label=INPUT_LABEL, allow_custom_value=True)
    w.target = gr.Radio(list(TARGETS), value="speed", label="Target")
    w.tolerance = gr.Number(0.01, label="Accuracy tolerance (validation drop, 0.01 = 1 point)",
                            minimum=0, maximum=1)
    # "auto": each pruned candidate fine-tunes with its model's own defaults (a ViT gets its own)
    w.epochs = gr.Dropdown([AUTO, "1", "2", "3", "5", "10", "20"], value=AUTO,
                           allow_custom_value=True, label="Fine-tuning epochs (auto: chosen "
                           "per model)")
    with gr.Row():  # the deployment target: ranked at the largest batch size
        w.deploy = gr.Textbox("1,64", label="Deployment batch sizes (e.g. 1,64)")
        w.budget = gr.Number(None, label="Latency budget, p50 ms (empty: none)", minimum=0)
    w.picks = gr.CheckboxGroup(list(CANDIDATE_NAMES), value=[],
                               label="Candidates (none ticked = all suited to this hardware)")
    w.run_btn, w.stop_btn = run_stop_buttons("Optimise")


def _results(w: SimpleNamespace) -> None:
    """The right column: status, explanation, candidates table, chart, files."""
    w.status = gr.Markdown("", elem_classes=["run-status"])
    w.explanation = gr.Markdown("")
    w.table = gr.Dataframe(label="Candidates, measured side by side", interactive=False)
    w.chart = gr.Plot(label="Size vs latency (front: red step line; winner: ★)")
    w.files = gr.File(label="Winner bundle and comparison report", file_count="multiple")


def _recipe_section(w: SimpleNamespace) -> None:
    with gr.Accordion("Run a recipe (the same as: studio run RECIPE.yaml)", open=False):
        w.recipe_text = gr.Code(EXAMPLE_RECIPE, language="yaml", label="Recipe (YAML)")
        w.recipe_upload = gr.File(label="…or a recipe file", file_types=[".yaml", ".yml"],
                                  height=100)
        with gr.Row():
            w.recipe_btn = gr.Button("Run recipe", variant="primary")
            w.recipe_stop = gr.Button("Stop recipe", variant="stop")
        w.recipe_status = gr.Markdown("", elem_classes=["run-status"])
        w.recipe_steps = gr.Dataframe(label="Steps (kept in the recipe run folder, steps/)",
                                      interactive=False)


def _recipe_done(rep: dict[str, Any], out: Any) -> tuple[str, pd.DataFrame]:
    """A finished recipe: its headline and one row per step."""
    rows = []
    for st in rep["recipe"]["steps"]:
        step_rep = json.loads((out / st["run_dir"] / "report.json").read_text())
        res = step_rep.get("result") or {}
        rows.append({"step": st["kind"], "run": st["run_id"],
                     "accuracy": _r(res.get("accuracy"), 4),
                     "size (KB)": _r((res.get("size_bytes") or 0) / 1024, 1),
                     "parity": f"{st['parity']['kind']}: "
                               f"{'ok' if st['parity']['ok'] else 'FAILED'}"})
    ratios = rep.get("ratios") or {}
    return (f"**Done** `{out.name}`: accuracy {rep['result']['accuracy']:.4f}, speed-up "
            f"{speed_label(ratios.get('speedup_b64'))} at batch 64, "
            f"{_r(ratios.get('size_reduction'))}× smaller than the recipe's trained model "
            "(measured side by side).", pd.DataFrame(rows))


def _recipe_handler(ctx: StudioContext) -> Any:
    def on_recipe(text: str, upload: str | None, request: gr.Request):
        from pathlib import Path

        from core.recipes import Recipe, run_recipe

        if upload:
            text = Path(upload).read_text(encoding="utf-8", errors="replace")[:100_000]
        recipe = call(lambda: Recipe.from_yaml(text or "", allow_paths=False))
        out = ctx.new_run_dir(request, "recipe")
        job = tracked(ctx, request, "recipe", {"recipe": recipe.to_dict()},
                      lambda cb: run_recipe(recipe, out_dir=out, callbacks=cb,
                                            measure_options=ctx.measure_options))
        yield f"▶ Running recipe '{recipe.name}'…", gr.skip()
        started = time.monotonic()
        for kind, payload in stream(job):
            if kind == "progress":
                yield progress_line(payload, started), gr.skip()
            elif kind == "done":
                yield _recipe_done(payload.report, out)

    return on_recipe


def _auto_done(rep: dict[str, Any], out: Any) -> tuple[Any, ...]:
    """A finished Auto run: status, explanation, candidates, chart and files."""
    from core.artifacts import make_bundle

    info = rep["auto"]
    hw = info["hardware"]
    lines = "\n".join(f"- **{e['name']}**: {e['why_lost']}" for e in info["losers"])
    text = f"### {info['explanation']}\n\nWhy the others lost:\n{lines}"
    rows = json.loads((out / "comparison" / "report.json").read_text())["rows"]
    bundle = make_bundle(out)
    return (f"**Done** on {hw['cpu']} ({', '.join(hw['isa']) or 'no ISA flags'}, "
            f"{hw['cores']} cores, CUDA {'yes' if hw['cuda'] else 'no'}). Winner "
            f"`{out.name}` is now a variant of this workspace (pick it in the bar to build on "
            "it).", text, candidates_frame(rep), comparison_charts(rows, info["winner"])[0],
            [str(bundle), str(out / "comparison" / "report.html")])


def _auto_config(ctx: StudioContext, tgt: Any, tol: Any, n_epochs: Any, chosen: Any,
                 batch_text: Any, budget_ms: Any) -> tuple[AutoConfig, dict[str, Any]]:
    """(AutoConfig, measure options for the deployment target) from the widgets."""
    from core.measure import Target

    deployment = call(lambda: Target(batch_sizes=str(batch_text or "1,64"),
                                     threads=ctx.measure_options.get("threads", 1),
                                     latency_budget_ms=budget_ms or None))
    mopts = {**ctx.measure_options, "batch_sizes": deployment.batch_sizes,
             "latency_budget_ms": deployment.latency_budget_ms}
    cfg = call(lambda: AutoConfig(target=tgt, tolerance=float(tol),
                                  finetune_epochs=auto_or(n_epochs, int, "finetune_epochs"),
                                  candidates=tuple(chosen or ())))
    return cfg, mopts


def _run_handler(ctx: StudioContext) -> Any:
    def on_run(choice, tgt, tol, n_epochs, chosen, batch_text="1,64", budget_ms=None,
               request: gr.Request = None):
        from core.auto import auto

        cfg, mopts = _auto_config(ctx, tgt, tol, n_epochs, chosen, batch_text, budget_ms)
        picked = call(lambda: ctx.find_run(request, choice)) if choice else None
        out = ctx.new_run_dir(request, "auto")
        skip = (gr.skip(),) * 4

        def work(cb):
            src = picked or ctx.ensure_baseline(request, cb)
            return auto(src, None, cfg, out_dir=out, callbacks=cb, measure_options=mopts)

        note = input_note(ctx, request, picked)
        yield (f"{note} Reading the hardware and proposing candidates…", *skip)
        started = time.monotonic()
        job = tracked(ctx, request, "auto", {"input": picked.name if picked else None,
                                             **cfg.to_dict()}, work)
        live: list[dict[str, Any]] = []
        for kind, payload in stream(job):
            if kind == "progress":
                yield (progress_line(payload, started), *skip)
            elif kind == "metrics" and payload.get("event") == "candidate":
                live.append(live_row(payload))
                yield (gr.skip(), gr.skip(), pd.DataFrame(live), gr.skip(), gr.skip())
            elif kind == "done":
                yield _auto_done(payload.report, out)

    return on_run


def build_auto_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Auto", id="auto", elem_id="auto-tab") as tab:
        gr.Markdown(INTRO)
        w = SimpleNamespace()
        with gr.Row():
            with gr.Column(scale=1):
                _form(w)
            with gr.Column(scale=2):
                _results(w)
        _recipe_section(w)

        def on_select(request: gr.Request):
            return variant_update(ctx, request)

        follow_current(shell, tab, on_select, [w.source])
        event = w.run_btn.click(
            _run_handler(ctx),
            [w.source, w.target, w.tolerance, w.epochs, w.picks, w.deploy, w.budget],
            [w.status, w.explanation, w.table, w.chart, w.files], api_name="auto",
            show_progress_on=[w.status], **ctx.engine())
        stop_button(ctx, w.stop_btn, event, w.status, "stop_auto", ("auto",))
        r_event = w.recipe_btn.click(_recipe_handler(ctx), [w.recipe_text, w.recipe_upload],
                                     [w.recipe_status, w.recipe_steps], api_name="run_recipe",
                                     show_progress_on=[w.recipe_status], **ctx.engine())
        stop_button(ctx, w.recipe_stop, r_event, w.recipe_status, "stop_recipe", ("recipe",))
    return tab
