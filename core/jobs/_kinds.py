"""What a job can be: one entry per kind, dispatching to the area verbs.

Each kind validates its config up front (so the REST API answers a clear 4xx before
anything is queued) and then runs one verb into the job's run folder. Inputs are other
jobs of the same owner (``"input": "<job id>"``) or their uploads (``"model"`` / ``"data"``:
``"upload:<id>"``, an id from ``POST /api/uploads``), never server paths. A method kind
(quantize, prune, distill) takes one shape, ``{"input": ..., "method": name, "config": {...}}``
(``method_payload`` also reads the older ones), or ``"model"`` + ``"data"`` in place of
``"input"``.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from core.errors import InvalidParameterError

__all__ = ["JobKind", "KINDS", "available_kinds", "method_payload"]

Resolver = Callable[..., Path]


@dataclass(frozen=True)
class JobKind:
    """A job kind: ``validate(config, resolve) -> clean config`` and
    ``run(config, out_dir, callbacks, resolve, measure_options) -> report``."""

    name: str
    summary: str
    validate: Callable[[dict[str, Any], Resolver], dict[str, Any]]
    run: Callable[..., Any]
    module: str | None = None  # the area package the kind needs


def _only(config: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InvalidParameterError(unknown[0], f"one of the '{kind}' job options "
                                    f"{sorted(allowed)}", config[unknown[0]])


def _builtin_data(value: Any) -> str:
    from core.data import list_datasets

    if value not in list_datasets():
        raise InvalidParameterError("data", f"one of the built-in data sets {list_datasets()}",
                                    value)
    return str(value)


def _input(config: Mapping[str, Any], resolve: Resolver) -> str:
    if "input" not in config:
        raise InvalidParameterError("input", "the id of one of your succeeded jobs", None)
    if not (resolve(config["input"]) / "report.json").is_file():  # e.g. an upload's id
        raise InvalidParameterError("input", "the id of one of your succeeded jobs (an upload "
                                    "goes in 'model' or 'data' as 'upload:<id>')",
                                    config["input"])
    return str(config["input"])


UPLOAD = "upload:"  # "model": "upload:<id>" / "data": "upload:<id>" name one of your uploads


def _upload_file(value: Any, resolve: Resolver, field: str) -> Path:
    """The stored file of one of the owner's uploads (``"upload:<id>"``) of kind ``field``."""
    ref = str(value).removeprefix(UPLOAD)
    folder = resolve(ref, field)
    found = sorted(folder.glob(f"{field}-*"))
    if not found:
        raise InvalidParameterError(field, f"'upload:<id>' of one of your {field} uploads", value)
    return found[0]


def _data_ref(value: Any, resolve: Resolver) -> str:
    """A built-in data set name, or ``"upload:<id>"`` of one of the owner's data uploads."""
    if isinstance(value, str) and value.startswith(UPLOAD):
        _upload_file(value, resolve, "data")
        return value
    return _builtin_data(value)


def _model_ref(value: Any, resolve: Resolver) -> str:
    """``"upload:<id>"`` of one of the owner's model uploads."""
    if not (isinstance(value, str) and value.startswith(UPLOAD)):
        raise InvalidParameterError("model", "'upload:<id>' of one of your model uploads (or "
                                    "give 'input': a job id)", value)
    _upload_file(value, resolve, "model")
    return value


def _source(value: str, resolve: Resolver, field: str) -> str:
    """What a verb takes for a validated ref: the upload's file, or the built-in name."""
    return str(_upload_file(value, resolve, field)) if value.startswith(UPLOAD) else value


# --- train ------------------------------------------------------------------------------------
_TRAIN_FIELDS = ("epochs", "lr", "batch_size", "seed", "precision", "grad_accum_steps",
                 "grad_checkpointing", "label_smoothing", "mixup_alpha", "cutmix_alpha",
                 "lr_schedule", "lr_step_epochs", "lr_gamma")
_TRAIN = {"model", "data", "model_kwargs", *_TRAIN_FIELDS}


def _v_train(config: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    from core.models import list_families
    from core.training import TrainConfig

    _only(config, _TRAIN, "train")
    model = config.get("model", "cnn")
    if model not in list_families():
        raise InvalidParameterError("model", f"one of {list_families()}", model)
    tc = TrainConfig(**{k: config[k] for k in _TRAIN_FIELDS if k in config})
    kwargs = config.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InvalidParameterError("model_kwargs", "an object of model widths", kwargs)
    return {"model": model, "data": _data_ref(config.get("data", "digits"), resolve),
            "model_kwargs": kwargs, **tc.to_dict()}


def _r_train(config, out_dir, cb, resolve, mopts):
    from core.runs import train_baseline
    from core.training import TrainConfig

    tc = TrainConfig(**{k: config[k] for k in ("epochs", "lr", "batch_size", "seed")})
    return train_baseline(config["model"], _source(config["data"], resolve, "data"), tc,
                          out_dir=out_dir, model_kwargs=config["model_kwargs"] or None,
                          callbacks=cb, measure_options=mopts)


# --- benchmark --------------------------------------------------------------------------------
def _v_benchmark(config, resolve):
    _only(config, {"input", "model", "data"}, "benchmark")
    if "model" in config:  # an uploaded model measured on a data set
        return _uploaded_model(config, resolve)
    return {"input": _input(config, resolve)}


def _uploaded_model(config: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
    """``model`` (an upload) and ``data`` (built-in or upload) in place of ``input``."""
    if "input" in config:
        raise InvalidParameterError("input", "unset when 'model' names an upload", config["input"])
    if "data" not in config:
        raise InvalidParameterError("data", "given with an uploaded model (a built-in name or "
                                    "'upload:<id>')", None)
    return {"model": _model_ref(config["model"], resolve),
            "data": _data_ref(config["data"], resolve)}


def _r_benchmark(config, out_dir, cb, resolve, mopts):
    from core.runs import benchmark_model

    if config.get("model"):
        return benchmark_model(_source(config["model"], resolve, "model"),
                               _source(config["data"], resolve, "data"), out_dir=out_dir,
                               callbacks=cb, measure_options=mopts)
    return benchmark_model(resolve(config["input"]), out_dir=out_dir, callbacks=cb,
                           measure_options=mopts)  # on the run's own data


# --- method payloads: one shape ---------------------------------------------------------------
def method_payload(config: Mapping[str, Any], default: str | None = None) -> dict[str, Any]:
    """A method kind's job config in its one shape ``{input, method, config}``.

    Older shapes are read too (REST clients, stored jobs): quantize's ``{method, options}``
    and ``{config: {method, ...}}`` (prune, distill). ``config`` comes back without
    ``method``/``schema_version``; ``method`` is None when neither names it (``default``)."""
    out = dict(config)
    if "options" in out:  # the old quantize shape
        if "config" in out:
            raise InvalidParameterError("options", "unset when 'config' is given ('options' "
                                        "is the old name of 'config')", out["options"])
        out["config"] = out.pop("options")
    inner = out.get("config") if out.get("config") is not None else {}
    if not isinstance(inner, dict):
        raise InvalidParameterError("config", "an object of the method's options", inner)
    inner = dict(inner)
    inner.pop("schema_version", None)  # config_schema's; the verbs read version 1
    named = inner.pop("method", None)
    method = out.get("method", named if named is not None else default)
    if named is not None and named != method:
        raise InvalidParameterError("config.method", f"unset or equal to 'method' ({method!r})",
                                    named)
    out.update(method=method, config=inner)
    return out


def _method_source(config: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
    """A job's model: an uploaded one (``model`` + ``data``) or a job's (``input``)."""
    if "model" in config:
        return _uploaded_model(config, resolve)
    return {"input": _input(config, resolve)}


def _model_and_data(config: Mapping[str, Any], resolve: Resolver) -> tuple[Any, Any]:
    """A method job's model and data for its verb: the uploads' files (or a built-in data
    name), or the input job's run folder on its own data (None)."""
    if config.get("model"):
        return (_source(config["model"], resolve, "model"),
                _source(config["data"], resolve, "data"))
    return resolve(config["input"]), None


# --- quantize ---------------------------------------------------------------------------------
def _v_quantize(config, resolve):
    from core.quantization import make_config

    config = method_payload(config, "ort-static-int8")
    _only(config, {"input", "model", "data", "method", "config"}, "quantize")
    cfg = make_config(config["method"], config["config"])
    return {**_method_source(config, resolve), "method": cfg.method, "config": cfg.to_dict()}


def _r_quantize(config, out_dir, cb, resolve, mopts):
    from core.quantization import make_config, quantize

    config = method_payload(config)
    cfg = make_config(config["method"], config["config"])
    return quantize(*_model_and_data(config, resolve), cfg, out_dir=out_dir, callbacks=cb,
                    measure_options=mopts)


# --- prune ------------------------------------------------------------------------------------
def _method_config(cls: type, config: Mapping[str, Any]) -> Any:
    """The config object of a normalised payload (its ``method`` put back in)."""
    method = config["method"]
    return cls.from_dict({**config["config"], **({"method": method} if method else {})})


def _v_prune(config, resolve):
    from core.pruning import PruningConfig

    config = method_payload(config)
    _only(config, {"input", "model", "data", "method", "config"}, "prune")
    cfg = _method_config(PruningConfig, config)
    return {**_method_source(config, resolve), "method": cfg.method, "config": cfg.to_dict()}


def _r_prune(config, out_dir, cb, resolve, mopts):
    from core.pruning import PruningConfig, prune

    cfg = _method_config(PruningConfig, method_payload(config))
    return prune(*_model_and_data(config, resolve), cfg, out_dir=out_dir, callbacks=cb,
                 measure_options=mopts)


# --- distill ----------------------------------------------------------------------------------
_DISTILL_PATHS = ("student", "teachers", "unlabelled")


def _v_distill(config, resolve):
    from core.distillation import DistillConfig

    config = method_payload(config)
    _only(config, {"input", "model", "data", "method", "config"}, "distill")
    raw = config["config"]
    for key in _DISTILL_PATHS:
        if raw.get(key):
            raise InvalidParameterError(key, "unset in an API job (server paths are not "
                                        "accepted; the student is scaled by width/depth)",
                                        raw[key])
    cfg = _method_config(DistillConfig, config)
    return {**_method_source(config, resolve), "method": cfg.method, "config": cfg.to_dict()}


def _r_distill(config, out_dir, cb, resolve, mopts):
    from core.distillation import DistillConfig, distill

    cfg = _method_config(DistillConfig, method_payload(config))
    return distill(*_model_and_data(config, resolve), cfg, out_dir=out_dir, callbacks=cb,
                   measure_options=mopts)


# --- scale ------------------------------------------------------------------------------------
def _v_scale(config, resolve):
    from core.federated import ScaleConfig

    _only(config, {"input", "config"}, "scale")
    cfg = ScaleConfig.from_dict(config.get("config") or {})
    out = {"config": cfg.to_dict()}
    if config.get("input") is not None:  # a model variant to federate; default: synthetic mlp
        out["input"] = _input(config, resolve)
    return out


def _r_scale(config, out_dir, cb, resolve, mopts):
    from core.federated import ScaleConfig, scale

    model = resolve(config["input"]) if config.get("input") else "mlp"
    return scale(model, None, ScaleConfig.from_dict(config["config"]), out_dir=out_dir,
                 callbacks=cb, measure_options=mopts)


# --- continual --------------------------------------------------------------------------------
def _v_continual(config, resolve):
    from core.continual import ContinualConfig, build_tasks
    from core.limits import check_limit

    _only(config, {"config"}, "continual")
    cfg = ContinualConfig.from_dict(config.get("config") or {})
    if cfg.sequence not in ("split-digits", "permuted-digits"):
        raise InvalidParameterError("sequence", "a built-in sequence ('split-digits' or "
                                    "'permuted-digits') in an API job", cfg.sequence)
    rows = sum(len(t.y_train) for t in build_tasks(cfg).tasks)
    total = (cfg.epochs + cfg.finetune_epochs) * (rows + cfg.n_tasks * min(cfg.replay_size, rows))
    check_limit("epochs", total, "train_samples", value=cfg.epochs,
                detail=f"at most {total:,} samples over {cfg.n_tasks} tasks with replay")
    return {"config": cfg.to_dict()}


def _r_continual(config, out_dir, cb, resolve, mopts):
    from core.continual import ContinualConfig, continual

    return continual(None, None, ContinualConfig.from_dict(config["config"]), out_dir=out_dir,
                     callbacks=cb, measure_options=mopts)


# --- compare ----------------------------------------------------------------------------------
def _v_compare(config, resolve):
    _only(config, {"inputs", "baseline"}, "compare")
    inputs = config.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= 20:
        raise InvalidParameterError("inputs", "a list of 1 to 20 job ids", inputs)
    for j in inputs:
        if not (resolve(j, "inputs") / "report.json").is_file():  # e.g. an upload's id
            raise InvalidParameterError("inputs", "ids of your succeeded jobs (an upload is "
                                        "no run to compare)", j)
    baseline = config.get("baseline")
    if baseline is not None and baseline not in inputs:
        raise InvalidParameterError("baseline", "one of the 'inputs' job ids", baseline)
    return {"inputs": [str(j) for j in inputs], "baseline": baseline}


def _r_compare(config, out_dir, cb, resolve, mopts):
    from core.compare import compare

    dirs = [resolve(j) for j in config["inputs"]]
    base = resolve(config["baseline"]).name if config.get("baseline") else None
    return compare(dirs, out_dir=out_dir, baseline=base, callbacks=cb, measure_options=mopts)


# --- auto / recipe (their modules validate) ----------------------------------------------------
def _v_auto(config, resolve):
    from core.auto import AutoConfig

    _only(config, {"input", "model", "data", "config"}, "auto")
    cfg = AutoConfig.from_dict(config.get("config") or {})
    out: dict[str, Any] = {"config": cfg.to_dict()}
    if "input" in config:
        out["input"] = _input(config, resolve)
    else:
        from core.models import list_families

        model = config.get("model", "cnn")
        if model not in list_families():
            if not str(model).startswith(UPLOAD):
                raise InvalidParameterError("model", f"one of {list_families()}, an uploaded "
                                            "model 'upload:<id>' (or give 'input')", model)
            model = _model_ref(model, resolve)
        out.update(model=model, data=_data_ref(config.get("data", "digits"), resolve))
    return out


def _r_auto(config, out_dir, cb, resolve, mopts):
    from core.auto import AutoConfig, auto

    cfg = AutoConfig.from_dict(config["config"])
    if config.get("input"):
        return auto(resolve(config["input"]), None, cfg, out_dir=out_dir, callbacks=cb,
                    measure_options=mopts)
    return auto(_source(config["model"], resolve, "model"),
                _source(config["data"], resolve, "data"), cfg, out_dir=out_dir, callbacks=cb,
                measure_options=mopts)


def _v_recipe(config, resolve):
    from core.recipes import Recipe

    _only(config, {"recipe"}, "recipe")
    recipe = Recipe.from_dict(config.get("recipe") or {}, allow_paths=False)
    return {"recipe": recipe.to_dict()}


def _r_recipe(config, out_dir, cb, resolve, mopts):
    from core.recipes import Recipe, run_recipe

    return run_recipe(Recipe.from_dict(config["recipe"], allow_paths=False), out_dir=out_dir,
                      callbacks=cb, measure_options=mopts)


# --- tune (resumable: the study lives beside the job folders) --------------------------------
def _v_tune(config, resolve):
    from core.tuning import TuneConfig

    _only(config, {"config"}, "tune")
    raw = dict(config.get("config") or {})
    for key in ("storage", "study_name"):
        if raw.get(key):
            raise InvalidParameterError(key, "unset in an API job (each job keeps its own "
                                        "study beside its folder)", raw[key])
    raw["data"] = _builtin_data(raw.get("data", "digits"))
    return {"config": TuneConfig.from_dict(raw).to_dict()}


def _r_tune(config, out_dir, cb, resolve, mopts):
    from core.tuning import TuneConfig, tune

    # A resumed job continues the study of the job it resumes, in that job's folder.
    folder = Path(out_dir).parent / config["resume_of"] if config.get("resume_of") else out_dir
    return tune(None, None, TuneConfig.from_dict(config["config"]), out_dir=folder,
                callbacks=cb, measure_options=mopts, overwrite=bool(config.get("resume_of")))


_ALL = [
    JobKind("train", "train a built-in model on a built-in data set", _v_train, _r_train),
    JobKind("benchmark", "re-measure a job's model", _v_benchmark, _r_benchmark),
    JobKind("quantize", "quantize a job's model", _v_quantize, _r_quantize,
            "core.quantization"),
    JobKind("prune", "prune a job's model", _v_prune, _r_prune, "core.pruning"),
    JobKind("distill", "distil a job's model into a smaller student", _v_distill, _r_distill,
            "core.distillation"),
    JobKind("compare", "re-measure several jobs' models side by side", _v_compare, _r_compare,
            "core.compare"),
    JobKind("auto", "find the best variant for a target", _v_auto, _r_auto, "core.auto"),
    JobKind("recipe", "run a recipe (ordered steps)", _v_recipe, _r_recipe, "core.recipes"),
    JobKind("scale", "federated simulation at several client counts", _v_scale, _r_scale,
            "core.federated"),
    JobKind("tune", "run a hyper-parameter study (resumable after an interruption)", _v_tune,
            _r_tune, "core.tuning"),
    JobKind("continual", "learn a task sequence with replay, optimizing after each task",
            _v_continual, _r_continual, "core.continual"),
]


def _with_budget(kind: JobKind) -> JobKind:
    """The kind whose validation also checks the compute budgets (``core.jobs._budgets``)."""
    from core.jobs._budgets import apply_budget

    def validate(config: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
        return apply_budget(kind.name, kind.validate(config, resolve), resolve)

    return replace(kind, validate=validate)


def available_kinds() -> dict[str, JobKind]:
    """The kinds whose area package is importable (verbs still being written are skipped)."""
    out = {}
    for kind in _ALL:
        if kind.module is not None:
            try:
                importlib.import_module(kind.module)
            except ImportError:
                continue
        out[kind.name] = _with_budget(kind)
    return out


class _LazyKinds(dict):
    """KINDS is filled on first use, so importing core.jobs imports no area package."""

    _lock = threading.Lock()  # concurrent first requests fill it once, not once each

    def _fill(self) -> None:
        if not super().__len__():
            with self._lock:
                if not super().__len__():
                    super().update(available_kinds())

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)

    def __getitem__(self, key: str) -> JobKind:
        self._fill()
        return super().__getitem__(key)

    def keys(self):
        self._fill()
        return super().keys()

    def items(self):
        self._fill()
        return super().items()


KINDS: dict[str, JobKind] = _LazyKinds()
