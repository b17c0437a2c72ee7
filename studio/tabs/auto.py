"""Tab "Auto": propose recipes for this hardware, run and measure them, pick and explain."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr
import pandas as pd

from core.auto import CANDIDATE_NAMES, TARGETS, AutoConfig
from core.compare import size_latency
from studio.context import StudioContext
from studio.runner import call, stream
from studio.tabs.jobs import tracked


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


def _r(value: Any, digits: int = 2) -> Any:
    return round(value, digits) if isinstance(value, (int, float)) else None


def build_auto_tab(ctx: StudioContext) -> gr.Tab:
    with gr.Tab("Auto", id="auto", elem_id="auto-tab") as tab:
        gr.Markdown("The auto-optimizer reads this machine's hardware (instruction sets such "
                    "as AVX-512 VNNI or AMX, cores, CUDA), proposes candidate recipes suited to "
                    "it (structured pruning + fine-tuning + static INT8, distillation + INT8, "
                    "FP16 only where the hardware computes it natively…), runs them, "
                    "re-measures all of them side by side, and picks the best one on the "
                    "Pareto front within your accuracy tolerance — and says why.")
        with gr.Row():
            with gr.Column(scale=1):
                source = gr.Dropdown([], label="Model to optimise (default: the session "
                                     "baseline)", allow_custom_value=True)
                target = gr.Radio(list(TARGETS), value="speed", label="Target")
                tolerance = gr.Number(0.01, label="Accuracy tolerance (validation drop, "
                                      "0.01 = 1 point)", minimum=0, maximum=1)
                epochs = gr.Slider(1, 30, value=3, step=1, label="Fine-tuning epochs")
                picks = gr.CheckboxGroup(list(CANDIDATE_NAMES), value=[],
                                         label="Candidates (none ticked = all suited to this "
                                         "hardware)")
                with gr.Row():
                    run_btn = gr.Button("Optimise", variant="primary")
                    stop_btn = gr.Button("Stop", variant="stop")
            with gr.Column(scale=2):
                status = gr.Markdown("")
                explanation = gr.Markdown("")
                table = gr.Dataframe(label="Candidates, measured side by side",
                                     interactive=False)
                chart = gr.Plot(label="Size vs latency (Pareto front ringed)")
                files = gr.File(label="Winner bundle and comparison report",
                                file_count="multiple")

        def on_select(request: gr.Request):
            choices = ctx.variant_choices(request)
            return gr.update(choices=choices, value=choices[-1] if choices else None)

        def on_run(choice, tgt, tol, n_epochs, chosen, request: gr.Request):
            from core.artifacts import make_bundle
            from core.auto import auto

            cfg = call(lambda: AutoConfig(target=tgt, tolerance=float(tol),
                                          finetune_epochs=int(n_epochs),
                                          candidates=tuple(chosen or ())))
            picked = call(lambda: ctx.find_run(request, choice)) if choice else None
            out = ctx.new_run_dir(request, "auto")
            skip = (gr.skip(),) * 4

            def work(cb):
                src = picked or ctx.ensure_baseline(request, cb)
                return auto(src, None, cfg, out_dir=out, callbacks=cb,
                            measure_options=ctx.measure_options)

            yield ("Reading the hardware and proposing candidates…", *skip)
            job = tracked(ctx, request, "auto", {"input": picked.name if picked else None,
                                                 **cfg.to_dict()}, work)
            for kind, payload in stream(job):
                if kind == "progress":
                    yield (f"{payload[1]} ({payload[0] * 100:.0f}%)", *skip)
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
                           f"Winner `{out.name}` is now a variant of this session.",
                           text, candidates_frame(rep), size_latency(rows),
                           [str(bundle), str(out / "comparison" / "report.html")])

        tab.select(on_select, None, [source])
        event = run_btn.click(on_run, [source, target, tolerance, epochs, picks],
                              [status, explanation, table, chart, files], api_name="auto",
                              show_progress_on=[status], **ctx.engine())
        stop_btn.click(None, None, None, cancels=[event], api_name="stop_auto")
    return tab
