"""Tab "Scalability": federated simulation at several client counts, measured."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from core.federated import ScaleConfig, scale
from core.registry import list_methods
from studio.context import StudioContext
from studio.runner import call, first_only, job_events
from studio.tabs.jobs import job_config
from studio.widgets import follow_current, run_stop_buttons, stop_button

SYNTHETIC = "mlp 9→[32, 16]→4 on seeded synthetic clients"
COLUMNS = ["clients", "engine", "total_s", "time_per_round_s", "peak_memory_mb",
           "final_accuracy", "convergence_round", "bytes_per_round", "bytes_communicated",
           "local_accuracy", "adapted_accuracy"]


def _counts(text: str) -> tuple[int, ...]:
    from core.errors import InvalidParameterError

    try:
        return tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise InvalidParameterError("client counts", "comma-separated integers", text) from None


def _line(x: list, ys: dict[str, list], title: str, xt: str, yt: str, log_x: bool = True):
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, y in ys.items():
        fig.add_trace(go.Scatter(x=x if not isinstance(y, tuple) else y[0],
                                 y=y if not isinstance(y, tuple) else y[1],
                                 mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title=xt, yaxis_title=yt, height=300,
                      margin=dict(l=40, r=10, t=40, b=40))
    if log_x:
        fig.update_xaxes(type="log", tickformat=".4~g")  # full labels, not "2 3 … 9"
    fig.update_layout(title={"text": title, "font": {"size": 14}, "x": 0},
                      template="plotly_white")
    return fig


HEADERS = {"clients": "clients", "engine": "engine", "total_s": "total (s)",
           "time_per_round_s": "time per round (ms)", "peak_memory_mb": "peak memory (MB)",
           "final_accuracy": "final accuracy", "convergence_round": "converged at round",
           "bytes_per_round": "KB sent per round (computed)",
           "bytes_communicated": "KB sent in total (computed)",
           "local_accuracy": "local accuracy", "adapted_accuracy": "adapted accuracy"}
SCALES = {"time_per_round_s": (1000, 2), "total_s": (1, 2), "peak_memory_mb": (1, 1),
          "final_accuracy": (1, 4), "bytes_per_round": (1 / 1024, 1),
          "bytes_communicated": (1 / 1024, 1), "local_accuracy": (1, 4),
          "adapted_accuracy": (1, 4)}


def scale_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The report's rows with human headers and rounded figures."""
    out = []
    for r in rows:
        row = {}
        for key, head in HEADERS.items():
            value = r.get(key)
            if isinstance(value, (int, float)) and key in SCALES:
                factor, digits = SCALES[key]
                value = round(value * factor, digits)
            row[head] = value
        out.append(row)
    return pd.DataFrame(out, columns=list(HEADERS.values()))


def accuracy_chart(history: dict[int, list[tuple[int, float]]]):
    """Global test accuracy per round, one line per client count."""
    series = {f"{c} clients": ([r for r, _ in h], [a for _, a in h]) for c, h in history.items()}
    return _line([], series, "Accuracy per round", "round", "accuracy", log_x=False)


def scaling_charts(rows: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
    """Time per round, peak memory and convergence round against the number of clients."""
    x = [r["clients"] for r in rows]
    t = _line(x, {"median s/round": [r["time_per_round_s"] for r in rows]},
              "Time per round vs clients", "clients", "seconds")
    m = _line(x, {"peak RSS growth MB": [r["peak_memory_mb"] for r in rows]},
              "Peak memory vs clients", "clients", "MB")
    c = _line(x, {"convergence round": [r["convergence_round"] for r in rows]},
              "Convergence round vs clients", "clients", "round")
    return t, m, c


def build_scalability_tab(ctx: StudioContext, shell: Any = None) -> gr.Tab:
    with gr.Tab("Scalability", id="scalability", elem_id="scalability-tab") as tab:
        gr.Markdown("Simulate federated learning from a few to 1000+ clients on this machine: "
                    "all clients of a round are trained at once (vmap); time, memory, "
                    "accuracy and convergence are measured per client count, and the bytes "
                    "sent are computed (model parameter bytes × clients per round).")
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown([SYNTHETIC], value=SYNTHETIC, label="Model (and its data)",
                                    allow_custom_value=True)
                counts = gr.Textbox("4,10,25,50,100", label="Client counts (comma-separated)")
                rounds = gr.Slider(1, 200, value=20, step=1, label="Rounds")
                samples = gr.Number(35, label="Samples per client", precision=0)
                algorithm = gr.Dropdown(list_methods("federated"), value="fedavg",
                                        label="Algorithm")
                alpha = gr.Number(0, label="Non-IID Dirichlet alpha (0 = IID)")
                stragglers = gr.Slider(0.0, 0.9, value=0.0, step=0.05,
                                       label="Straggler / drop-out fraction")
                run_btn, stop_btn = run_stop_buttons("Run")
                with gr.Accordion("More options", open=False):
                    fraction = gr.Slider(0.05, 1.0, value=1.0, step=0.05,
                                         label="Client sampling fraction per round")
                    engine = gr.Dropdown(["builtin", "loop", "flower"], value="builtin",
                                         label="Engine (builtin = vectorised; loop = "
                                         "reference; flower needs flwr[simulation])")
                    local_epochs = gr.Slider(1, 20, value=1, step=1, label="Local epochs")
            with gr.Column(scale=2):
                status = gr.Markdown("Set the client counts and press Run.",
                                     elem_classes=["run-status"])
                with gr.Row():
                    time_plot = gr.Plot(label="Time per round")
                    mem_plot = gr.Plot(label="Peak memory")
                with gr.Row():
                    acc_plot = gr.Plot(label="Accuracy per round")
                    conv_plot = gr.Plot(label="Convergence round")
                table = gr.Dataframe(pd.DataFrame(columns=list(HEADERS.values())),
                                     label="Report",
                                     interactive=False)
                files = gr.File(label="Download: report.json, scalability.csv, rounds.csv",
                                file_count="multiple")

        def on_select(request: gr.Request):
            return gr.update(choices=[SYNTHETIC] + ctx.variant_choices(request))

        def on_run(choice, text, n_rounds, spc, algo, a, strag, frac, eng, epochs,
                   request: gr.Request):
            src = None if not choice or choice == SYNTHETIC else \
                call(lambda: ctx.find_run(request, choice))
            config = call(lambda: ScaleConfig(
                client_counts=_counts(text), rounds=int(n_rounds),
                samples_per_client=int(spc or 0), algorithm=algo,
                alpha=float(a) if a else None, stragglers=float(strag),
                client_fraction=float(frac), engine=eng, local_epochs=int(epochs)))
            run_dir = ctx.new_run_dir(request, "scale")
            history: dict[int, list[tuple[int, float]]] = {}

            def work(cb):
                return scale(src if src is not None else "mlp", None, config, out_dir=run_dir,
                             callbacks=cb, parent=src.name if src is not None else None,
                             measure_options=getattr(ctx, "measure_options", None))

            last = 0
            for kind, payload in job_events(ctx, request, "scale", job_config(src, config), work):
                if kind == "status":
                    yield first_only(payload, 7)
                elif kind == "metrics":
                    history.setdefault(payload["clients"], []).append(
                        (payload["round"], payload["accuracy"]))
                    if payload["round"] % 5 == 0 or payload["round"] < last:
                        yield (gr.skip(),) * 3 + (accuracy_chart(history),) + (gr.skip(),) * 3
                    last = payload["round"]
                elif kind == "done":
                    yield _done(payload.report, run_dir, history)

        follow_current(shell, tab, on_select, [model])
        event = run_btn.click(
            on_run, [model, counts, rounds, samples, algorithm, alpha, stragglers, fraction,
                     engine, local_epochs],
            [status, time_plot, mem_plot, acc_plot, conv_plot, table, files],
            api_name="scale", show_progress_on=[status], **ctx.engine())
        stop_button(ctx, stop_btn, event, status, "stop_scale", ("scale",))
        gr.Button("Refresh variants", size="sm").click(on_select, None, [model],
                                                       api_name="scale_variants")
    return tab


def _done(report: dict[str, Any], run_dir: Any, history: dict[int, list[tuple[int, float]]]
          ) -> tuple[Any, ...]:
    """The finished run: summary, the four charts, the report table, the files."""
    rows = report["scalability"]["results"]
    t, m, c = scaling_charts(rows)
    paths = [str(run_dir / n) for n in ("report.json", "scalability.csv", "rounds.csv")]
    return (_summary(report, run_dir.name), t, m, accuracy_chart(history), c,
            scale_frame(rows), paths)


def _summary(report: dict[str, Any], run_id: str) -> str:
    rows = report["scalability"]["results"]
    last = rows[-1]
    text = (f"**Done** `{run_id}` ({report['method']}): {last['clients']} clients, "
            f"{last['time_per_round_s'] * 1000:.1f} ms per round (median), final accuracy "
            f"**{last['final_accuracy']:.3f}**, converged at round {last['convergence_round']}, "
            f"{last['bytes_per_round']:,} bytes uploaded per round (computed: parameter "
            "bytes × clients).")
    summary = report["scalability"].get("summary") or {}
    if summary:
        grow = "sub-linearly" if summary["sublinear"] else "linearly or worse"
        text += (f" Time per round grew {summary['time_per_round_ratio']:.1f}× for "
                 f"{summary['clients_ratio']:.0f}× the clients ({grow}).")
    for w in report.get("warnings", []):
        text += f"\n\n⚠ {w}"
    return text
