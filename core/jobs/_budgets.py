"""Compute budgets checked when a job is submitted, so an over-budget job is a 422 naming the
parameter and the limit (``core.limits``), never a worker held for days.

Each kind's check reads its validated config: training samples (epochs × training rows, summed
over steps, trials, candidates and clients), tuning trials and time limit, client counts, and
the parameter count of any built-in model the job will build.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from core.errors import InvalidParameterError
from core.limits import LimitError, check_limit, get_limit

__all__ = ["apply_budget"]


@dataclass(frozen=True)
class DataFacts:
    """What a budget needs to know about a job's data set."""

    rows: int  # training rows
    input_shape: tuple[int, ...]
    num_classes: int


def _facts(ds: Any) -> DataFacts:
    return DataFacts(len(ds.y_train), tuple(ds.input_shape), ds.num_classes)


@lru_cache(maxsize=16)
def _builtin_facts(name: str) -> DataFacts:
    from core.data import BUILTIN_SIZES, load_dataset, split_sizes

    if name not in BUILTIN_SIZES:
        return _facts(load_dataset(name))
    rows, shape, classes = BUILTIN_SIZES[name]
    return DataFacts(split_sizes(rows)[0], shape, classes)


# An uploaded data set is read in the server process to size a job: one at a time, and once
# per file (one parse of a CSV within every limit took 0.78 GB and 3.1 s here; 8 submits at
# once parsed side by side, 17 times).
_READING = threading.Lock()


@lru_cache(maxsize=32)
def _file_facts(path: str, mtime_ns: int, size: int) -> DataFacts:
    from core.data import load_dataset

    return _facts(load_dataset(path))


def _data_facts(ref: str, resolve: Callable[..., Any]) -> DataFacts:
    """Facts for a built-in name or an ``upload:<id>`` (the upload is read within limits)."""
    from core.data import BUILTIN
    from core.jobs._kinds import _source

    if ref in BUILTIN:
        return _builtin_facts(ref)
    path = Path(_source(ref, resolve, "data"))
    with _READING:
        return _file_facts(str(path), path.stat().st_mtime_ns, path.stat().st_size)


def _input_facts(job_id: str, resolve: Callable[..., Any]) -> DataFacts:
    """Facts for the data set another job ran on (read from its report)."""
    from core.artifacts import read_report
    from core.data import BUILTIN_SIZES, dataset_from_spec, split_sizes

    spec = read_report(resolve(job_id)).get("data") or {"source": "digits"}
    source = str(spec.get("source"))
    if source in BUILTIN_SIZES:
        rows, shape, classes = BUILTIN_SIZES[source]
        fractions = {k: spec[k] for k in ("test_fraction", "val_fraction") if k in spec}
        return DataFacts(split_sizes(rows, **fractions)[0], shape, classes)
    with _READING:
        return _facts(dataset_from_spec(spec))


def _job_facts(config: Mapping[str, Any], resolve: Callable[..., Any]) -> DataFacts:
    if config.get("input"):
        return _input_facts(str(config["input"]), resolve)
    return _data_facts(str(config.get("data", "digits")), resolve)


def _samples(name: str, epochs: float, facts: DataFacts, value: Any, what: str) -> None:
    total = int(epochs) * facts.rows
    check_limit(name, total, "train_samples", value=value,
                detail=f"{what} = {int(epochs):,} epochs × {facts.rows:,} training rows = "
                       f"{total:,} samples")


def _model_size(family: str, facts: DataFacts, kwargs: Mapping[str, Any]) -> int:
    from core.models import count_parameters, model_kwargs_for_data

    return count_parameters(family, **model_kwargs_for_data(
        family, facts.input_shape, facts.num_classes, **dict(kwargs)))


# --- per kind -----------------------------------------------------------------------------------
def _train(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    facts = _job_facts(config, resolve)
    _model_size(config["model"], facts, config.get("model_kwargs") or {})
    _samples("epochs", config["epochs"], facts, config["epochs"], "training")


def _quantize(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    epochs = (config.get("config") or config.get("options") or {}).get("epochs")
    if epochs:  # quantization-aware training fine-tunes
        _samples("epochs", epochs, _job_facts(config, resolve), epochs, "the QAT fine-tune")


def _prune(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    cfg = config["config"]
    ft = cfg.get("finetune_epochs")  # None/absent: chosen per model, at most 10 epochs
    epochs = int(10 if ft is None else ft) * int(cfg.get("steps", 1))
    if epochs:
        _samples("finetune_epochs", epochs, _job_facts(config, resolve),
                 cfg.get("finetune_epochs"), f"{cfg.get('steps', 1)} steps × fine-tune")


def _distill(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    epochs = int(config["config"].get("epochs", 0))
    _samples("epochs", epochs, _job_facts(config, resolve), epochs, "distillation")


def _scale(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    cfg = config["config"]
    counts = [int(c) for c in cfg["client_counts"]]
    check_limit("client_counts", max(counts), "clients", value=cfg["client_counts"],
                detail=f"{max(counts):,} clients asked")
    per_client = int(cfg["samples_per_client"])
    total = sum(counts) * int(cfg["rounds"]) * per_client * int(cfg.get("local_epochs", 1))
    check_limit("rounds", total, "train_samples", value=cfg["rounds"],
                detail=f"{sum(counts):,} clients (all counts) × {cfg['rounds']:,} rounds × "
                       f"{per_client:,} samples × {cfg.get('local_epochs', 1)} local epochs = "
                       f"{total:,} samples")
    if config.get("input"):
        return
    values = max(counts) * per_client * int(cfg["input_dim"])
    name = "input_dim" if int(cfg["input_dim"]) / 9 > per_client / 35 else "samples_per_client"
    check_limit(name, values * 8 / 2**20, "data_mb", value=cfg[name],
                detail=f"{max(counts):,} clients × {per_client:,} samples × "
                       f"{cfg['input_dim']:,} features = {values:,} values")
    facts = DataFacts(per_client, (int(cfg["input_dim"]),), int(cfg["num_classes"]))
    _model_size("mlp", facts, {"hidden_dims": [32, 16]})


def _auto(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    from core.auto._candidates import CANDIDATE_NAMES
    from core.models import list_families

    cfg = config["config"]
    facts = _job_facts(config, resolve)
    names = cfg.get("candidates") or CANDIDATE_NAMES
    trained = [n for n in names if n.startswith(("prune", "distill"))]
    per_candidate = cfg.get("finetune_epochs")
    if per_candidate is None:  # each model's own fine-tune defaults: at most 10 epochs (a ViT)
        per_candidate = 10
    finetunes = (len(trained) + 2 * int(cfg.get("refine", 0)) * bool(trained)) \
        * int(per_candidate)
    base = 0
    if not config.get("input") and config.get("model") in list_families():
        _model_size(config["model"], facts, {})
        base = int(cfg.get("train_epochs", 0))
    name = "train_epochs" if base > finetunes else "finetune_epochs"
    _samples(name, base + finetunes, facts, cfg.get(name),
             f"{base} epochs training the base model + {finetunes} fine-tuning candidates")


def _step_epochs(kind: str, options: Mapping[str, Any]) -> int:
    if kind == "prune":
        epochs = options.get("finetune_epochs", 1)
        return int(10 if epochs is None else epochs) * int(options.get("steps", 1))
    if kind in ("train", "finetune"):
        return int(options.get("epochs", 10))
    if kind == "distill":
        return int(options.get("epochs", 10))
    return int(options.get("epochs", 0) or 0)  # quantize: QAT epochs, if any


def _recipe(config: dict[str, Any], resolve: Callable[..., Any]) -> None:
    recipe = config["recipe"]
    facts = _data_facts(str(recipe.get("data", "digits")), resolve)
    steps = [next(iter(s.items())) for s in recipe["steps"]]
    if steps and steps[0][0] == "train":
        _model_size(str(recipe.get("model", "cnn")), facts, recipe.get("model_kwargs") or {})
    epochs = sum(_step_epochs(kind, opts or {}) for kind, opts in steps)
    _samples("steps", epochs, facts, [k for k, _ in steps], "all steps")


def _space_high(space: Any, name: str, default: int) -> int:
    if name not in space.names:
        return default
    dim = space[name]
    values = dim.choices if dim.kind == "categorical" else (dim.high,)
    return max(int(v) for v in values)


def _tune(config: dict[str, Any], resolve: Callable[..., Any]) -> dict[str, Any]:
    from core.tuning import TuneConfig

    cfg = TuneConfig.from_dict(config["config"])
    check_limit("n_trials", cfg.n_trials, "trials", value=cfg.n_trials)
    cap = get_limit("tune_s")
    if cfg.timeout_s is not None:
        check_limit("timeout_s", cfg.timeout_s, "tune_s", value=cfg.timeout_s,
                    detail=f"a time limit of {cfg.timeout_s:,g} s asked")
    space = cfg.search_space()
    epochs = _space_high(space, "epochs", int((cfg.train or {}).get("epochs", cfg.epochs)))
    if cfg.target == "recipe":
        epochs += _space_high(space, "finetune_epochs", 1)
    facts = _data_facts(cfg.data, resolve)
    _samples("n_trials", cfg.n_trials * epochs, facts, cfg.n_trials,
             f"{cfg.n_trials:,} trials × up to {epochs} epochs each")
    if cfg.target != "recipe":
        _largest_trial_model(cfg, space, facts)
    if cfg.timeout_s is None:  # a job always has a time limit: the server's
        config = {**config, "config": cfg.replace(timeout_s=float(cap)).to_dict()}
    return config


def _largest_trial_model(cfg: Any, space: Any, facts: DataFacts) -> None:
    """Refuse a search space whose largest model is over STUDIO_MAX_MODEL_PARAMS (greedy over
    each dimension's extremes: parameter counts grow with every width and depth)."""
    from core.tuning._config import TRAIN_KEYS, split_params

    dims = [space[n] for n in space.names if n not in TRAIN_KEYS]
    if not dims:
        return

    def extremes(dim: Any) -> list[Any]:
        return list(dim.choices) if dim.kind == "categorical" else [dim.low, dim.high]

    def size(params: dict[str, Any]) -> int:
        typed = {d.name: (int(params[d.name]) if d.kind == "int" else params[d.name])
                 for d in dims}
        _, kwargs = split_params(typed, cfg.model, None, cfg.model_kwargs, cfg.epochs, cfg.seed)
        try:
            return _model_size(cfg.model, facts, kwargs)
        except LimitError:
            raise
        except (InvalidParameterError, ValueError, TypeError):
            return -1  # a combination the trial itself would refuse

    current = {d.name: extremes(d)[-1] for d in dims}
    for dim in dims:
        scored = [(size({**current, dim.name: v}), i) for i, v in enumerate(extremes(dim))]
        current[dim.name] = extremes(dim)[max(scored)[1]]


_CHECKS: dict[str, Callable[[dict[str, Any], Callable[..., Any]], Any]] = {
    "train": _train, "quantize": _quantize, "prune": _prune, "distill": _distill,
    "scale": _scale, "auto": _auto, "recipe": _recipe, "tune": _tune,
}


def apply_budget(kind: str, config: dict[str, Any], resolve: Callable[..., Any]
                 ) -> dict[str, Any]:
    """Check a validated job config against the compute limits; returns the config to store
    (a tuning job without a time limit gets the server's, STUDIO_MAX_TUNE_S)."""
    data = config.get("data")
    if isinstance(data, str) and data.startswith("upload:"):  # any kind: within the data limits
        _data_facts(data, resolve)
    check = _CHECKS.get(kind)
    checked = check(config, resolve) if check else None
    return checked if isinstance(checked, dict) else config
