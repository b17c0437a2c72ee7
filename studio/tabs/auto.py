"""Tab "Auto": propose recipes for this hardware, run and measure them, pick and explain."""

from __future__ import annotations

import json
import time
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
    INPUT_LABEL,
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


def build_auto_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Auto", id="auto", elem_id="auto-tab") as tab:
        gr.Markdown("The auto-optimizer reads this machine's hardware (instruction sets such "
                    "as AVX-512 VNNI or AMX, cores, CUDA), proposes candidate recipes suited to "
                    "it (structured pruning + fine-tuning + static INT8, distillation + INT8, "
                    "FP16 only where the hardware computes it natively…), runs them, "
                    "re-measures all of them side by side, and picks the best one on the "
                    "Pareto front within your accuracy tolerance — and says why.")
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Dropdown([], label=INPUT_LABEL, allow_custom_value=True)
                target = gr.Radio(list(TARGETS), value="speed", label="Target")
                tolerance = gr.Number(0.01, label="Accuracy tolerance (validation drop, "
                                      "0.01 = 1 point)", minimum=0, maximum=1)
                epochs = gr.Slider(1, 30, value=3, step=1, label="Fine-tuning epochs")
                with gr.Row():  # the deployment target: ranked at the largest batch size
                    deploy = gr.Textbox("1,64", label="Deployment batch sizes (e.g. 1,64)")
                    budget = gr.Number(None, label="Latency budget, p50 ms (empty: none)",
                                       minimum=0)
                picks = gr.CheckboxGroup(list(CANDIDATE_NAMES), value=[],
                                         label="Candidates (none ticked = all suited to this "
                                         "hardware)")
                run_btn, stop_btn = run_stop_buttons("Optimise")
            with gr.Column(scale=2):
                status = gr.Markdown("", elem_classes=["run-status"])
                explanation = gr.Markdown("")
                table = gr.Dataframe(label="Candidates, measured side by side",
                                     interactive=False)
                chart = gr.Plot(label="Size vs latency (front: red step line; winner: ★)")
                files = gr.File(label="Winner bundle and comparison report",
                                file_count="multiple")

        with gr.Accordion("Run a recipe (the same as: studio run RECIPE.yaml)", open=False):
            recipe_text = gr.Code(EXAMPLE_RECIPE, language="yaml", label="Recipe (YAML)")
            recipe_upload = gr.File(label="…or a recipe file", file_types=[".yaml", ".yml"],
                                    height=100)
            with gr.Row():
                recipe_btn = gr.Button("Run recipe", variant="primary")
                recipe_stop = gr.Button("Stop recipe", variant="stop")
            recipe_status = gr.Markdown("", elem_classes=["run-status"])
            recipe_steps = gr.Dataframe(label="Steps (kept in the recipe run folder, steps/)",
                                        interactive=False)

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
                    rep = payload.report
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
                    yield (f"**Done** `{out.name}`: accuracy {rep['result']['accuracy']:.4f}, "
                           f"speed-up {speed_label(ratios.get('speedup_b64'))} at batch 64, "
                           f"{_r(ratios.get('size_reduction'))}× smaller than the recipe's "
                           "trained model (measured side by side).", pd.DataFrame(rows))

        def on_select(request: gr.Request):
            return variant_update(ctx, request)

        def on_run(choice, tgt, tol, n_epochs, chosen, batch_text="1,64", budget_ms=None,
                   request: gr.Request = None):
            from core.artifacts import make_bundle
            from core.auto import auto
            from core.measure import Target

            deployment = call(lambda: Target(batch_sizes=str(batch_text or "1,64"),
                                             threads=ctx.measure_options.get("threads", 1),
                                             latency_budget_ms=budget_ms or None))
            mopts = {**ctx.measure_options, "batch_sizes": deployment.batch_sizes,
                     "latency_budget_ms": deployment.latency_budget_ms}

            cfg = call(lambda: AutoConfig(target=tgt, tolerance=float(tol),
                                          finetune_epochs=int(n_epochs),
                                          candidates=tuple(chosen or ())))
            picked = call(lambda: ctx.find_run(request, choice)) if choice else None
            out = ctx.new_run_dir(request, "auto")
            skip = (gr.skip(),) * 4

            def work(cb):
                src = picked or ctx.ensure_baseline(request, cb)
                return auto(src, None, cfg, out_dir=out, callbacks=cb,
                            measure_options=mopts)

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
                    rep = payload.report
                    info = rep["auto"]
                    hw = info["hardware"]
                    lines = "\n".join(f"- **{e['name']}**: {e['why_lost']}"
                                      for e in info["losers"])
                    text = f"### {info['explanation']}\n\nWhy the others lost:\n{lines}"
                    rows = json.loads(
                        (out / "comparison" / "report.json").read_text())["rows"]
                    bundle = make_bundle(out)
                    yield (f"**Done** on {hw['cpu']} ({', '.join(hw['isa']) or 'no ISA flags'}"
                           f", {hw['cores']} cores, CUDA {'yes' if hw['cuda'] else 'no'}). "
                           f"Winner `{out.name}` is now a variant of this workspace (pick it "
                           "in the bar to build on it).",
                           text, candidates_frame(rep),
                           comparison_charts(rows, info["winner"])[0],
                           [str(bundle), str(out / "comparison" / "report.html")])

        follow_current(shell, tab, on_select, [source])
        event = run_btn.click(on_run, [source, target, tolerance, epochs, picks, deploy, budget],
                              [status, explanation, table, chart, files], api_name="auto",
                              show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_auto", ("auto",))
        r_event = recipe_btn.click(on_recipe, [recipe_text, recipe_upload],
                                   [recipe_status, recipe_steps], api_name="run_recipe",
                                   show_progress_on=[recipe_status], **ctx.engine())
        stop_button(ctx, recipe_stop, r_event, recipe_status, "stop_recipe", ("recipe",))
    return tab
