"""``studio tune --config FILE.yaml [--storage URL] [--study NAME] [--n-trials N] --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_normalize, add_out, config_default, data_help
    from core.models import list_families
    from core.tuning._config import PRUNERS, SAMPLERS, TuneConfig

    def fallback(name: str) -> str:
        return f"(default: the --config file's, else {config_default(TuneConfig, name)})"

    p = subparsers.add_parser(
        "tune", help="tune hyper-parameters or search architectures with Optuna",
        description="Run or resume an Optuna study. Several processes (or machines) given the "
                    "same --storage and --study work on one study.")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML TuneConfig (or a study.yaml export); omitted: the defaults")
    p.add_argument("--storage", default=None,
                   help="sqlite:///file.db, postgresql://user:pw@host/db, journal:///file.log "
                        "(default: studies.db beside --out)")
    p.add_argument("--study", default=None, help="study name (resumes it if it exists)")
    p.add_argument("--n-trials", type=int, default=None,
                   help="finished trials the study should reach (all workers together)")
    p.add_argument("--timeout", type=float, default=None, help="seconds for this process")
    p.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help=f"Optuna sampler {fallback('sampler')}")
    p.add_argument("--pruner", default=None, choices=list(PRUNERS),
                   help=f"early stopping of unpromising trials {fallback('pruner')}")
    p.add_argument("--model", default=None,
                   help=f"a family ({', '.join(list_families())}) or a run folder to start "
                        f"from {fallback('model')}")
    p.add_argument("--data", default=None,
                   help=f"{data_help()} {fallback('data')}")
    add_normalize(p)
    p.add_argument("--seed", type=int, default=None,
                   help=f"random seed of the sampler and training {fallback('seed')}")
    p.add_argument("--threads", type=int, default=1, help="threads used when timing")
    p.add_argument("--train-best", action="store_true",
                   help="also retrain the best trial into DIR/best (a measured run folder)")
    add_out(p)
    p.set_defaults(func=_cmd_tune)


def load_config(args: argparse.Namespace) -> Any:
    import yaml

    from core.errors import InvalidParameterError
    from core.tuning import TuneConfig

    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            text = Path(args.config).read_text()
        except OSError as exc:
            raise InvalidParameterError("config", "a readable YAML file", str(exc)) from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise InvalidParameterError("config", f"valid YAML ({exc})", str(args.config)) \
                from None
        if not isinstance(loaded, dict):
            raise InvalidParameterError("config", "a YAML mapping", type(loaded).__name__)
        values = dict(loaded.get("config", loaded)) if isinstance(loaded.get("config"), dict) \
            else dict(loaded)
    overrides = {"storage": args.storage, "study_name": args.study, "n_trials": args.n_trials,
                 "timeout_s": args.timeout, "sampler": args.sampler, "pruner": args.pruner,
                 "seed": args.seed, "data": args.data}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if args.sampler is not None:  # --sampler names the method (a study.yaml's "method" too)
        values.pop("method", None)
    if args.model is not None and not Path(args.model).exists():
        values["model"] = args.model
    return TuneConfig.from_dict(values)


def _cmd_tune(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.tuning import train_best, tune

    config = load_config(args)
    model = args.model if args.model is not None and Path(args.model).exists() else None
    data = None
    if args.normalize:  # otherwise the study loads config.data as given
        from core.data import load_dataset

        data = load_dataset(config.data, seed=config.seed, normalize=True)
    result = tune(model, data, config, out_dir=args.out, callbacks=progress_callbacks("tune"),
                  measure_options={"threads": args.threads})
    study = result.report["study"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(study["counts"].items()))
    print(f"tune: study '{study['study_name']}' in {study['storage']}: {counts}"
          f"{' (resumed)' if study['resumed'] else ''}")
    ep = study["epochs"]
    print(f"epochs spent {ep['spent']} of {ep['planned']} planned "
          f"({ep['saved']} saved by {ep['rule']})")
    for row in study["best"][:5]:
        vals = ", ".join(f"{k} {v:.4g}" for k, v in (row["values"] or {}).items())
        print(f"best trial {row['number']}: {vals}; params {row['params']}")
    for w in result.report.get("warnings", []):
        print(f"warning: {w}")
    print(f"report: {args.out / 'report.json'}")
    if args.train_best and study["best"]:
        best = train_best(args.out, out_dir=args.out / "best",
                          callbacks=progress_callbacks("train best"),
                          measure_options={"threads": args.threads})
        print_summary(best.report, args.out / "best")
    return args.out
