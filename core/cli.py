"""The ``studio`` command line: one verb per area, each writing DIR/report.json and artifacts.

Exit codes: 0 success, 2 bad input (one clear line on stderr), 1 internal error or a failed
study (every trial failed: the first trial's error is printed). Every verb takes ``--json``
(one JSON object on stdout, everything else on stderr) and ``--config FILE.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import InvalidParameterError, StudioError

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

# Model files a user brings (a studio run folder records its data; these do not).
USER_MODEL_SUFFIXES = (".onnx", ".pt", ".pt2")


class StudioHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless its text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        no_default = any(default is v for v in (None, False, argparse.SUPPRESS))
        if ("default" in text.lower() or no_default
                or (not action.option_strings and action.nargs not in ("?", "*"))):
            return text
        if isinstance(default, (list, tuple)):
            shown = ",".join(str(v) for v in default).replace("%", "%%")
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


class UsageError(SystemExit):
    """A command line argparse refused (exit 2); keeps the message for ``--json``."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class StudioParser(argparse.ArgumentParser):
    """An ArgumentParser whose verbs show defaults and whose usage errors carry a message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", StudioHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        text = f"{self.prog}: error: {message}"
        print(text, file=sys.stderr)
        raise UsageError(text)


def config_default(cls: type, name: str) -> Any:
    """A config dataclass field's default (CLI defaults are read from the configs)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


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
    verdicts = report.get("speed_verdicts") or {}
    parts += [f"{k} {v:.2f}" + (f" ({verdicts[k]})" if verdicts.get(k) else "")
              for k, v in (report.get("ratios") or {}).items() if v is not None]
    print(f"{report.get('operation')}: " + ", ".join(parts))
    if res.get("latency_ms"):
        print(f"timed: {_timed_words(report)}")
    for w in report.get("warnings", []):
        print(f"warning: {w}")
    print(f"report: {out / 'report.json'}")


def _timed_words(report: dict[str, Any]) -> str:
    """Where and how a report's latencies were timed: runtime(s), threads, CPU."""
    def runtime(part: str) -> str | None:
        return (((report.get(part) or {}).get("extra") or {}).get("timed_with"))

    res, base = runtime("result"), runtime("baseline")
    both = res if base in (None, res) else f"{res} (baseline: {base})"
    env = report.get("environment") or {}
    return (f"{both or 'unknown runtime'}, {(report.get('result') or {}).get('threads')} "
            f"thread(s), {env.get('cpu', 'unknown CPU')}")


def _measure_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"threads": args.threads}


def _cmd_train(args: argparse.Namespace) -> Path:
    from core.models import count_parameters, model_kwargs_for_data
    from core.runs import train_baseline
    from core.training import TrainConfig
    from core.training._cli import train_options

    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                      weight_decay=args.weight_decay, optimizer=args.optimizer,
                      warmup_epochs=args.warmup_epochs, seed=args.seed,
                      **train_options(args))
    model_kwargs = parse_model_kwargs(args.model_kwargs, args.model_config)
    data = _dataset(args)
    # the model factory checks the kwargs (names, widths, limits) before any training
    count_parameters(args.model, **model_kwargs_for_data(
        args.model, data.input_shape, data.num_classes, **model_kwargs))
    result = train_baseline(args.model, data, cfg, out_dir=args.out, model_kwargs=model_kwargs,
                            callbacks=progress_callbacks("train"),
                            measure_options=_measure_options(args))
    print_summary(result.report, args.out)
    return args.out


def _parse_value(text: str) -> Any:
    """``64,128`` -> [64, 128], ``0.1`` -> 0.1, ``gelu`` -> 'gelu' (YAML scalars)."""
    import yaml

    text = text.strip()
    if "," in text and not text.startswith("["):
        text = f"[{text}]"
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_yaml_mapping(path: str | Path, name: str) -> dict[str, Any]:
    """A YAML file holding one mapping, or one clear error naming the option."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidParameterError(name, "a readable YAML file", Path(path).name) from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidParameterError(name, f"valid YAML ({str(exc).splitlines()[0]})",
                                    Path(path).name) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InvalidParameterError(name, "a YAML mapping (key: value lines)",
                                    type(loaded).__name__)
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def parse_model_kwargs(items: Sequence[str] | dict | None,
                       file: str | Path | None = None) -> dict[str, Any]:
    """``--model-config FILE`` then ``--model-kwargs KEY=VALUE ...`` as one kwargs dict."""
    values = read_yaml_mapping(file, "model-config") if file else {}
    if isinstance(items, dict):  # from a --config file
        return {**values, **items}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError("model-kwargs", "KEY=VALUE pairs, e.g. channels=64,128",
                                        item)
        values[key.strip().replace("-", "_")] = _parse_value(text)
    return values


def _dataset(args: argparse.Namespace):
    from core.data import load_dataset

    return load_dataset(args.data, label_column=args.label_column, seed=args.seed,
                        normalize=args.normalize)


def _cmd_benchmark(args: argparse.Namespace) -> Path:
    from core.runs import benchmark_model, data_from_report

    if args.data is None:  # a run folder: its own data (a model file without data is refused)
        from core.artifacts import read_report

        data = data_from_report(read_report(args.model))
    else:
        data = _dataset(args)
    result = benchmark_model(args.model, data, out_dir=args.out, output_name=args.output_name,
                             callbacks=progress_callbacks("benchmark"),
                             measure_options=_measure_options(args))
    print_summary(result.report, args.out)
    return args.out


def _cmd_models(args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.models import DEFAULTS, list_families

    rows = [{"family": name, "defaults": DEFAULTS.get(name, {})} for name in list_families()]
    for row in rows:
        print(f"{row['family']}\tdefaults: {json.dumps(row['defaults'])}")
    return rows


def _cmd_datasets(args: argparse.Namespace) -> list[dict[str, Any]]:
    from core.data import list_datasets, load_dataset

    rows = []
    for name in list_datasets():
        s = load_dataset(name).summary()
        rows.append({"name": name, **s})
        print(f"{name}\t{s['kind']}, input {s['input_shape']}, {s['num_classes']} classes, "
              f"{s['train'] + s['val'] + s['test']} rows")
    return rows


_AREA_ALIASES = {"quantize": "quantization", "prune": "pruning", "distill": "distillation",
                 "tune": "tuning", "scale": "federated"}


def _cmd_methods(args: argparse.Namespace) -> list[dict[str, str]]:
    from core.registry import get_method, list_areas, list_methods

    areas = list_areas()
    if args.area:
        area = _AREA_ALIASES.get(args.area, args.area)
        if area not in areas:
            raise InvalidParameterError("area", f"one of {areas}", args.area)
        areas = [area]
    rows = [{"area": area, "method": name, "summary": get_method(area, name).summary}
            for area in areas for name in list_methods(area)]
    for row in rows:
        print(f"{row['area']}\t{row['method']}\t{row['summary']}")
    return rows


def _cmd_serve(args: argparse.Namespace) -> None:
    from studio.app import launch

    launch(host=args.host, port=args.port, root=args.root)


def _cmd_completion(args: argparse.Namespace) -> None:
    """Print the shell's completion script (argcomplete)."""
    try:
        import argcomplete
    except ImportError:  # pragma: no cover - argcomplete is a dependency
        raise InvalidParameterError("completion", "available after `pip install argcomplete`",
                                    args.shell) from None
    sys.stdout.write(argcomplete.shellcode(["studio"], shell=args.shell))


def add_normalize(p: argparse.ArgumentParser) -> None:
    """--normalize: standardize a user .csv/.npz; without it the data goes in as given."""
    p.add_argument("--normalize", action="store_true",
                   help="standardize a user .csv/.npz with the train split's mean and std "
                        "(default: the data as given; built-in data sets keep their scaling)")


def data_help() -> str:
    """The --data help text, naming the built-in data sets."""
    from core.data import list_datasets

    return f"built-in data set ({', '.join(list_datasets())}), or a .csv or .npz file"


def add_data(p: argparse.ArgumentParser, *, default: str | None = "digits",
             help: str | None = None) -> None:
    """--data, --label-column and --normalize; ``default=None``: a run folder's own data (a
    model file needs --data); ``help`` replaces the --data text (default: ``data_help()``)."""
    p.add_argument("--data", default=default, help=data_help() if help is None else help)
    p.add_argument("--label-column", default="label", help="label column of a .csv data file")
    add_normalize(p)


def add_common(p: argparse.ArgumentParser, *, out: bool = True, data: bool = True,
               data_default: str | None = "digits", data_text: str | None = None) -> None:
    """Options shared by verbs: --data, --label-column, --normalize (``add_data`` with
    ``data_default`` and ``data_text``), --seed, the target options, --out."""
    if data:
        add_data(p, default=data_default, help=data_text)
    p.add_argument("--seed", type=int, default=0,
                   help="random seed (splits, initialisation, sampling)")
    from core.measure._target import add_target_options

    add_target_options(p)  # --batch-sizes, --threads, --latency-budget-ms
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


def _check_user_model_data(args: argparse.Namespace) -> None:
    """A user's model file comes with --data: only a studio run folder records its data."""
    if not hasattr(args, "data") or args.data is not None:
        return
    if args.verb in _OWN_CONFIG_VERBS and getattr(args, "config", None) is not None:
        return  # tune: its config file may name the data
    for name in ("model", "teacher"):
        value = getattr(args, name, None)
        if value is None:
            continue
        path = Path(str(value))
        if not path.is_dir() and (path.is_file() or path.suffix.lower() in USER_MODEL_SUFFIXES):
            raise InvalidParameterError(
                "data", f"given with a model file (--{name} {path.name}): a built-in name "
                "(`studio datasets`), a .csv or a .npz; only a studio run folder records "
                "its data", None)


def _add_builtin_verbs(sub: Any, *, train: bool = True) -> None:
    """serve, models, datasets, methods, completion, train and benchmark."""
    p = sub.add_parser("serve", help="open the studio in a browser")
    p.add_argument("--host", default=None,
                   help="address to listen on (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port (default: GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder for sessions and runs (default: STUDIO_ROOT or results)")
    p.set_defaults(func=_cmd_serve)
    sub.add_parser("models", help="list built-in model families").set_defaults(func=_cmd_models)
    sub.add_parser("datasets", help="list built-in data sets").set_defaults(func=_cmd_datasets)
    p = sub.add_parser("methods", help="list registered methods")
    p.add_argument("area", nargs="?", default=None,
                   help="an area or verb, e.g. quantization or prune (default: every area)")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("completion", help="print a shell completion script",
                       description="Enable completion with: eval \"$(studio completion bash)\"")
    p.add_argument("shell", nargs="?", default="bash", choices=["bash", "zsh", "fish", "tcsh"],
                   help="shell to complete in")
    p.set_defaults(func=_cmd_completion)
    if train:  # its --model choices import core.models, hence torch (seconds)
        _add_train(sub)
    p = sub.add_parser("benchmark", help="measure a model under the protocol")
    p.add_argument("--model", required=True, help="run folder, .onnx, .pt or .pt2")
    add_output_name(p)
    add_common(p, data_default=None, data_text=data_help() + " (default: a run folder's own "
               "data; a model file needs --data)")
    p.set_defaults(func=_cmd_benchmark)


def _action(p: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in p._actions if a.dest == dest)


def _add_train(sub: Any) -> None:
    from core.models import list_families
    from core.training import TrainConfig
    from core.training._cli import add_train_options
    from core.training._train import OPTIMIZERS

    p = sub.add_parser(
        "train", help="train a built-in model (the baseline)",
        description="Train a built-in model family on a data set and measure it. Widths: "
                    "--model-kwargs channels=64,128 (see `studio models` for each family's).")
    p.add_argument("--model", default="cnn", choices=list_families(),
                   help="built-in model family")
    p.add_argument("--model-kwargs", nargs="+", default=None, metavar="KEY=VALUE",
                   help="the family's widths and options, e.g. channels=64,128 (cnn), "
                        "hidden_dims=256,128 (mlp), dim=64 depth=4 (vit); default: the "
                        "family's defaults (`studio models`)")
    p.add_argument("--model-config", type=Path, default=None, metavar="FILE.yaml",
                   help="YAML mapping of model kwargs (--model-kwargs entries win; default: "
                        "none)")
    cfg = TrainConfig
    p.add_argument("--epochs", type=int, default=config_default(cfg, "epochs"),
                   help="training epochs")
    p.add_argument("--lr", type=float, default=config_default(cfg, "lr"), help="learning rate")
    p.add_argument("--batch-size", type=int, default=config_default(cfg, "batch_size"),
                   help="training batch size")
    p.add_argument("--weight-decay", type=float, default=config_default(cfg, "weight_decay"),
                   help="L2 weight decay")
    p.add_argument("--optimizer", default=config_default(cfg, "optimizer"),
                   choices=list(OPTIMIZERS), help="optimiser")
    p.add_argument("--warmup-epochs", type=int, default=config_default(cfg, "warmup_epochs"),
                   help="epochs of linear learning-rate warm-up")
    add_train_options(p)
    add_common(p)
    _action(p, "seed").default = config_default(cfg, "seed")
    p.set_defaults(func=_cmd_train)


def _add_generic_options(sub: Any) -> None:
    """--trust-model, --json and --config on every verb (verbs added later get them too)."""
    for verb, p in sub.choices.items():
        if verb not in _NO_MODEL_VERBS:
            p.add_argument("--trust-model", action="store_true",
                           help="allow TorchScript (.pt) and torch.export (.pt2) models: "
                                "loading one runs code stored in the file")
        p.add_argument("--json", action="store_true",
                       help="print the result as one JSON object on stdout (progress and "
                            "messages go to stderr)")
        data = next((a for a in p._actions if a.dest == "data"), None)
        if data is not None and data.default is None and "default" not in (data.help or ""):
            data.help = f"{data.help} (default: a run folder's own data; a model file needs it)"
        if "--config" not in p._option_string_actions:
            p.add_argument("--config", type=Path, default=None, metavar="FILE.yaml",
                           help="YAML mapping of this verb's options (keys: the option names "
                                "with _ for -, e.g. batch_size); flags given on the command "
                                "line win; default: none")


# The area module that adds each verb: a command line naming one of these imports only its area
# (building every area's parser imports them all, ~2 s). A verb missing here builds them all.
VERB_AREAS: dict[str, str] = {
    "quantize": "core.quantization._cli", "distill": "core.distillation._cli",
    "tune": "core.tuning._cli", "prune": "core.pruning._cli", "compare": "core.compare._cli",
    "run": "core.recipes._cli", "auto": "core.auto._cli", "scale": "core.federated._cli",
    "profile": "core.profiling._cli", "fuse": "core.fusion._cli",
    "factorize": "core.fusion._cli", "serve-model": "core.serving._cli",
    "agent": "core.serving._cli", "continual": "core.continual._cli",
}


def _areas_for(argv: Sequence[str] | None, builtin: Any) -> list[str]:
    """The area CLI modules a command line needs: the verb's own, or all of them (no verb,
    an option before it, an unknown verb, or shell completion)."""
    import os

    verb = argv[0] if argv else None
    if verb is None or verb.startswith("-") or "_ARGCOMPLETE" in os.environ:
        return list(AREA_CLIS)
    if verb in builtin:
        return []
    area = VERB_AREAS.get(verb)
    return [area] if area in AREA_CLIS else list(AREA_CLIS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a verb, only that verb's area is imported."""
    parser = StudioParser(
        prog="studio", description="Make PyTorch/ONNX models smaller and faster, measured. "
        "Each verb writes DIR/report.json and its artifacts.",
        epilog="Every verb takes --help, --json (one JSON object on stdout) and --config "
               "FILE.yaml. Completion: eval \"$(studio completion bash)\".")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    area_verb = bool(argv) and argv[0] in VERB_AREAS  # e.g. quantize: no train parser
    _add_builtin_verbs(sub, train=not area_verb)
    for name in _areas_for(argv, set(sub.choices) | {"train"}):
        importlib.import_module(name).add_parser(sub)
    _add_generic_options(sub)
    return parser


# Verbs that never load a model file; every other verb takes --trust-model.
_NO_MODEL_VERBS = {"serve", "models", "datasets", "methods", "completion", "train", "scale",
                   "serve-model", "agent"}
# Verbs whose own --config means something else (tune: a TuneConfig/study.yaml file).
_OWN_CONFIG_VERBS = {"tune"}


def _verb_parser(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser | None:
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(verb)
    return None


def _config_path(argv: Sequence[str]) -> str | None:
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def apply_config_file(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Make a verb's ``--config FILE.yaml`` values its defaults: command-line flags win."""
    verb = next((t for t in argv if not t.startswith("-")), None)
    path = _config_path(argv)
    p = _verb_parser(parser, verb) if verb else None
    if path is None or p is None or verb in _OWN_CONFIG_VERBS:
        return
    values = read_yaml_mapping(path, "config")
    actions = {a.dest: a for a in p._actions
               if a.dest not in ("help", "config", "json", argparse.SUPPRESS)}
    for key, value in values.items():
        if key not in actions:
            raise InvalidParameterError("config", f"keys among {sorted(actions)} (the "
                                        f"'{verb}' options)", key)
        _set_default(actions[key], key, value)


def _set_default(action: argparse.Action, key: str, value: Any) -> None:
    """One --config value as the option's default, converted and checked like a flag."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise InvalidParameterError(key, "true or false", value)
    elif action.nargs in (None, "?") and isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)  # comma-separated options
    value = _convert(action, key, value)
    if action.choices is not None and value is not None:
        bad = [v for v in (value if isinstance(value, list) else [value])
               if v not in action.choices]
        if bad:
            raise InvalidParameterError(key, f"one of {list(action.choices)}", bad[0])
    action.default, action.required = value, False
    if not action.option_strings:  # a positional: optional once the file gives it
        action.nargs = "*" if action.nargs in ("+", "*") else "?"


def _convert(action: argparse.Action, key: str, value: Any) -> Any:
    convert = action.type
    if convert is None or value is None or isinstance(value, (bool, dict)):
        return value
    try:
        if isinstance(value, (list, tuple)):
            return [convert(str(v)) for v in value]
        return convert(str(value))
    except (TypeError, ValueError):
        name = getattr(convert, "__name__", "valid")
        raise InvalidParameterError(key, f"a {name} value", value) from None


def _json_summary(result: Any) -> Any:
    """What --json prints: a run folder's report (no environment/artifact lists) + its path."""
    if isinstance(result, Path) and (result / "report.json").is_file():
        report = json.loads((result / "report.json").read_text())
        summary = {k: v for k, v in report.items() if k not in ("environment", "artifacts")}
        return {"ok": True, **summary, "report": str(result / "report.json")}
    return {"ok": True, "result": result}


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def _error_json(exc: BaseException, code: int) -> dict[str, Any]:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return {"ok": False, "error": {"type": type(exc).__name__, "message": message,
                                   "exit_code": code}}


def _execute(args: argparse.Namespace) -> Any:
    """Check --out and the inputs, then run the verb (its human output to stderr with --json)."""
    from core.artifacts import allow_overwrite, trusted_model_code

    if getattr(args, "out", None) is not None:
        _check_out(args)
    _check_user_model_data(args)
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    from core.measure._target import target_from_args, using_target

    target = target_from_args(args)  # given once, used by every measurement of the verb
    deployment = using_target(target) if target is not None else contextlib.nullcontext()
    with quiet, deployment, allow_overwrite(getattr(args, "overwrite", False)), \
            trusted_model_code(getattr(args, "trust_model", False)):
        return args.func(args)


def run(argv: Sequence[str] | None = None, *, err: Callable[[str], None] | None = None) -> int:
    """Parse and run; returns the exit code."""
    err = err or (lambda msg: print(msg, file=sys.stderr))
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    parser = build_parser(argv)
    _autocomplete(parser)
    try:
        try:
            apply_config_file(parser, argv)
            args = parser.parse_args(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
            if want_json and code:
                _print_json(_error_json(exc, code))
            return code
        try:
            result = _execute(args)
        finally:
            _close_bars()  # an error message gets a line of its own
    except StudioError as exc:
        code = getattr(exc, "exit_code", 2)
        err(f"error: {exc}")
        if want_json:
            _print_json(_error_json(exc, code))
        return code
    except KeyboardInterrupt as exc:
        err("error: interrupted")
        if want_json:
            _print_json(_error_json(exc, 130))
        return 130
    except Exception as exc:  # an internal error: say so plainly
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            return 1  # the reader left (`studio methods | head`): nothing is wrong to report
        err(f"internal error: {type(exc).__name__}: {exc}")
        if want_json:
            _print_json(_error_json(exc, 1))
        return 1
    if args.json:
        _print_json(_json_summary(result))
    return 0


def _stdout_closed() -> bool:
    """Whether stdout's reader has gone; if so, stdout is pointed at /dev/null so that
    Python's flush at exit does not fail again (the Python docs' SIGPIPE recipe)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()  # a pipe whose reader closed polls as an error
        poller.register(fd, select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file behind stdout
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (argcomplete; a no-op otherwise)."""
    try:
        import argcomplete
    except ImportError:  # optional: completion only
        return
    argcomplete.autocomplete(parser)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":  # `python -m core.cli`: run the one module the area CLIs import
    from core.cli import main as _main

    _main()
