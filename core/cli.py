"""The ``studio`` command line: one verb per area, each writing DIR/report.json and artifacts.

Exit codes: 0 success, 2 bad input (one clear line on stderr), 1 internal error or a failed
study (every trial failed: the first trial's error is printed).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import StudioError

# Each area module exposes ``add_parser(subparsers)``; its parser sets ``func=handler(args)``.
AREA_CLIS: list[str] = [
    "core.quantization._cli",
    "core.distillation._cli",
    "core.tuning._cli",
    "core.pruning._cli",
    "core.compare._cli",
    "core.recipes._cli",
    "core.auto._cli",
    "core.federated._cli",
    "core.profiling._cli",
    "core.fusion._cli",
    "core.continual._cli",
    "core.serving._cli",
]


_BARS: list = []  # open progress bars, closed before a message is printed


def _close_bars() -> None:
    while _BARS:
        _BARS.pop().close()


def progress_callbacks(label: str):
    """Callbacks that draw a tqdm progress bar on stderr."""
    from tqdm import tqdm

    from core.callbacks import Callbacks

    bar = tqdm(total=100, desc=label, file=sys.stderr, leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    _BARS.append(bar)

    def on_progress(fraction: float, message: str) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(message[:60], refresh=True)

    return Callbacks(on_progress=on_progress)


def print_summary(report: dict[str, Any], out: Path) -> None:
    """One short human summary of a report on stdout."""
    res = report.get("result") or {}
    lat = res.get("latency_ms", {})
    parts = [f"accuracy {res.get('accuracy', float('nan')):.4f}",
             f"size {res.get('size_bytes', 0):,} B"]
    parts += [f"p50 b{bs} {v['p50']:.3f} ms" for bs, v in lat.items()]
    parts += [f"{k} {v:.2f}" for k, v in (report.get("ratios") or {}).items() if v is not None]
    print(f"{report.get('operation')}: " + ", ".join(parts))
    for w in report.get("warnings", []):
        print(f"warning: {w}")
    print(f"report: {out / 'report.json'}")


def _measure_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"threads": args.threads}


def _cmd_train(args: argparse.Namespace) -> Path:
    from core.runs import train_baseline
    from core.training import TrainConfig

    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    data = _dataset(args)
    report = train_baseline(args.out, model=args.model, data=data, config=cfg,
                            callbacks=progress_callbacks("train"),
                            measure_options=_measure_options(args))
    print_summary(report, args.out)
    return args.out


def _dataset(args: argparse.Namespace):
    from core.data import load_dataset

    return load_dataset(args.data, label_column=args.label_column, seed=args.seed,
                        normalize=args.normalize)


def _cmd_benchmark(args: argparse.Namespace) -> Path:
    from core.runs import benchmark_model

    report = benchmark_model(args.out, model=args.model, data=_dataset(args),
                             output_name=args.output_name,
                             callbacks=progress_callbacks("benchmark"),
                             measure_options=_measure_options(args))
    print_summary(report, args.out)
    return args.out


def _cmd_models(args: argparse.Namespace) -> None:
    from core.models import DEFAULTS, list_families

    for name in list_families():
        print(f"{name}\tdefaults: {json.dumps(DEFAULTS.get(name, {}))}")


def _cmd_datasets(args: argparse.Namespace) -> None:
    from core.data import list_datasets, load_dataset

    for name in list_datasets():
        s = load_dataset(name).summary()
        print(f"{name}\t{s['kind']}, input {s['input_shape']}, {s['num_classes']} classes, "
              f"{s['train'] + s['val'] + s['test']} rows")


_AREA_ALIASES = {"quantize": "quantization", "prune": "pruning", "distill": "distillation",
                 "tune": "tuning", "scale": "federated"}


def _cmd_methods(args: argparse.Namespace) -> None:
    from core.errors import InvalidParameterError
    from core.registry import get_method, list_areas, list_methods

    areas = list_areas()
    if args.area:
        area = _AREA_ALIASES.get(args.area, args.area)
        if area not in areas:
            raise InvalidParameterError("area", f"one of {areas}", args.area)
        areas = [area]
    for area in areas:
        for name in list_methods(area):
            print(f"{area}\t{name}\t{get_method(area, name).summary}")


def _cmd_serve(args: argparse.Namespace) -> None:
    from studio.app import launch

    launch(host=args.host, port=args.port, root=args.root)


def add_normalize(p: argparse.ArgumentParser) -> None:
    """--normalize: standardize a user .csv/.npz; without it the data goes in as given."""
    p.add_argument("--normalize", action="store_true",
                   help="standardize a user .csv/.npz with the train split's mean and std "
                        "(default: the data as given; built-in data sets keep their scaling)")


def add_common(p: argparse.ArgumentParser, *, out: bool = True, data: bool = True) -> None:
    """Options shared by verbs: --data, --label-column, --seed, --threads, --out."""
    if data:
        p.add_argument("--data", default="digits", help="built-in name, .csv or .npz")
        p.add_argument("--label-column", default="label")
        add_normalize(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads used when timing")
    if out:
        add_out(p)


def add_output_name(p: argparse.ArgumentParser) -> None:
    """--output-name: which output of a several-output ONNX model holds the class scores."""
    p.add_argument("--output-name", default=None,
                   help="ONNX output holding the class scores (default: a float [batch, "
                        "classes] output, preferring names like logits or probabilities)")


def add_out(p: argparse.ArgumentParser) -> None:
    """--out DIR (a new or empty folder, or an earlier run folder with --overwrite)."""
    p.add_argument("--out", type=Path, required=True,
                   help="run folder to write: a new or empty folder (an existing studio run "
                        "folder only with --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it is an earlier studio run folder")


_INPUT_ARGS = ("model", "teacher", "student", "runs", "recipe", "data")


def _check_out(args: argparse.Namespace) -> None:
    """Refuse a bad --out before any work starts (the verbs check again when they write)."""
    from core.artifacts import check_out_dir

    inputs: list[Any] = []
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        inputs += value if isinstance(value, list) else [value]
    inputs += [t for t in str(getattr(args, "teachers", "") or "").split(",") if t]
    check_out_dir(args.out, overwrite=args.overwrite, inputs=inputs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("serve", help="open the studio in a browser")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--root", type=Path, default=None, help="folder for sessions and runs")
    p.set_defaults(func=_cmd_serve)
    sub.add_parser("models", help="list built-in model families").set_defaults(func=_cmd_models)
    sub.add_parser("datasets", help="list built-in data sets").set_defaults(func=_cmd_datasets)
    p = sub.add_parser("methods", help="list registered methods")
    p.add_argument("area", nargs="?", default=None)
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("train", help="train a built-in model (the baseline)")
    p.add_argument("--model", default="cnn")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64)
    add_common(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("benchmark", help="measure a model under the protocol")
    p.add_argument("--model", required=True, help="run folder, .onnx, .pt or .pt2")
    add_output_name(p)
    add_common(p)
    p.set_defaults(func=_cmd_benchmark)
    for name in AREA_CLIS:
        importlib.import_module(name).add_parser(sub)
    for verb, p in sub.choices.items():
        if verb not in _NO_MODEL_VERBS:
            p.add_argument("--trust-model", action="store_true",
                           help="allow TorchScript (.pt) and torch.export (.pt2) models: "
                                "loading one runs code stored in the file")
    return parser


# Verbs that never load a model file; every other verb takes --trust-model.
_NO_MODEL_VERBS = {"serve", "models", "datasets", "methods", "train", "scale",
                   "serve-model", "agent"}


def run(argv: Sequence[str] | None = None, *, err: Callable[[str], None] | None = None) -> int:
    """Parse and run; returns the exit code."""
    err = err or (lambda msg: print(msg, file=sys.stderr))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from core.artifacts import allow_overwrite, trusted_model_code

    try:
        try:
            if getattr(args, "out", None) is not None:
                _check_out(args)
            with allow_overwrite(getattr(args, "overwrite", False)), \
                    trusted_model_code(getattr(args, "trust_model", False)):
                args.func(args)
        finally:
            _close_bars()  # an error message gets a line of its own
    except StudioError as exc:
        err(f"error: {exc}")
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        err("error: interrupted")
        return 130
    except Exception as exc:  # an internal error: say so plainly
        err(f"internal error: {type(exc).__name__}: {exc}")
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":  # `python -m core.cli`: run the one module the area CLIs import
    from core.cli import main as _main

    _main()
