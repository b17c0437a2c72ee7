"""TuneConfig: what to tune, how to search, which objectives, where the study lives."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Mapping, get_args

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig
from core.tuning._space import (
    DEFAULT_ARCH_SPACE,
    DEFAULT_PARAM_SPACE,
    SearchSpace,
    as_list,
    parse_space,
)

Target = Literal["hyperparameters", "architecture", "recipe"]
Sampler = Literal["grid", "random", "tpe", "gp", "cmaes", "nsga2"]
Pruner = Literal["none", "median", "successive-halving", "hyperband"]
Objective = Literal["accuracy", "latency", "size"]
TARGETS, SAMPLERS, PRUNERS = (get_args(t) for t in (Target, Sampler, Pruner))
Positive = Annotated[float, Field(gt=0)]
# Each objective has one direction: accuracy up, latency and size down.
OBJECTIVES: dict[str, str] = {"accuracy": "maximize", "latency": "minimize", "size": "minimize"}
TRAIN_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "optimizer", "warmup_epochs",
              "precision", "grad_accum_steps", "grad_checkpointing", "label_smoothing",
              "mixup_alpha", "cutmix_alpha", "lr_schedule", "lr_step_epochs", "lr_gamma")
# Architecture keys that are not constructor arguments; ``arch_kwargs`` turns them into widths.
ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "cnn": ("depth", "width", "width_growth", "head_width"),
    "mlp": ("depth", "width", "width_decay"),
    "vit": ("mlp_ratio",),
}
# The compression recipe: pruning then quantization of a trained model, both measured.
RECIPE_KEYS = ("sparsity", "pruning_method", "finetune_epochs", "quantization_method",
               "calibration", "per_channel", "fusion_method", "rank_ratio")
DEFAULT_RECIPE_SPACE: dict[str, Any] = {
    "sparsity": {"type": "float", "low": 0.1, "high": 0.7},
    "pruning_method": ["none", "structured-l2", "structured-l1"],
    "quantization_method": ["none", "ort-static-int8", "ort-dynamic-int8"],
    "calibration": ["minmax", "percentile"],
}
PRUNER_OPTIONS = ("n_startup_trials", "n_warmup_steps", "min_resource", "reduction_factor")


def family_keys(family: str) -> set[str]:
    """Parameter names a trial may set for a family: training, constructor and arch keys."""
    from core.models._families import _FAMILIES

    if family not in _FAMILIES:
        raise InvalidParameterError("model", f"one of {sorted(_FAMILIES)}", family)
    ctor = set(inspect.signature(_FAMILIES[family].__init__).parameters) - {
        "self", "input_shape", "input_dim", "num_classes"}
    return set(TRAIN_KEYS) | ctor | set(ARCH_KEYS.get(family, ()))


def default_space(target: str, family: str) -> dict[str, Any]:
    """The shipped space for a target and family (a copy: spaces are data)."""
    if target == "architecture":
        return copy.deepcopy(DEFAULT_ARCH_SPACE[family])
    if target == "recipe":
        return copy.deepcopy(DEFAULT_RECIPE_SPACE)
    space = copy.deepcopy(DEFAULT_PARAM_SPACE)
    if family == "vit":
        space.pop("dropout")
    return space


@dataclass(frozen=True)
class TuneConfig(MethodConfig):
    """A study: the target, its space, the sampler/pruner, objectives and storage.

    ``space`` maps a parameter to ``{type: float|int|categorical, low, high, log, step,
    choices}`` (a list is shorthand for choices); ``None`` uses the shipped space for the
    target. ``n_trials`` is the number of finished trials the study should reach (a
    resumed study only runs the missing ones). ``storage`` is an Optuna URL
    (``sqlite:///file.db``, ``postgresql://user@host/db``) or a journal file
    (``journal:///path/file.log``); ``None`` means ``studies.db`` beside the run folder.
    """

    method_field: ClassVar[str] = "sampler"  # the registered tuning methods are the samplers

    # Constraints declared for the published JSON schema; __post_init__ enforces them.
    target: Target = "hyperparameters"
    data: str = "digits"
    model: str = "cnn"
    space: dict[str, Any] | None = None
    objectives: tuple[Objective, ...] = ("accuracy",)
    sampler: Sampler = "tpe"
    pruner: Pruner = "none"
    n_trials: Annotated[int, Field(ge=1, le=100_000)] = 20
    timeout_s: Positive | None = None
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0
    storage: str | None = None
    study_name: str | None = None
    epochs: Annotated[int, Field(ge=1, le=1000)] = 5
    train: dict[str, Any] | None = None
    model_kwargs: dict[str, Any] | None = None
    max_latency_ms: Positive | None = None
    max_size_bytes: Annotated[int, Field(ge=1)] | None = None
    pruner_options: dict[str, Any] | None = None
    latency_budget_s: Annotated[float, Field(ge=0.005, le=10)] = 0.1
    grid_points: Annotated[int, Field(ge=2, le=50)] = 3
    heartbeat_s: Annotated[int, Field(ge=1, le=3600)] = 10
    max_retry: Annotated[int, Field(ge=0, le=100)] = 1

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_numbers()
        self._check_mappings()
        self._check_space()

    def _check_choices(self) -> None:
        """Target, sampler, pruner and objectives are known names (objectives: a tuple)."""
        if self.target not in TARGETS:
            raise InvalidParameterError("target", f"one of {list(TARGETS)}", self.target)
        if self.sampler not in SAMPLERS:
            raise InvalidParameterError("sampler", f"one of {list(SAMPLERS)}", self.sampler)
        if self.pruner not in PRUNERS:
            raise InvalidParameterError("pruner", f"one of {list(PRUNERS)}", self.pruner)
        objectives = tuple(as_list(self.objectives))
        if not objectives or any(o not in OBJECTIVES for o in objectives) \
                or len(set(objectives)) != len(objectives):
            raise InvalidParameterError("objectives", f"a non-empty list of distinct names "
                                        f"among {list(OBJECTIVES)}", list(objectives))
        object.__setattr__(self, "objectives", objectives)
        if self.sampler == "cmaes" and len(objectives) > 1:
            raise InvalidParameterError("sampler", "a multi-objective sampler (nsga2, tpe, gp, "
                                        "random, grid) when there are several objectives",
                                        self.sampler)

    def _check_numbers(self) -> None:
        check_range("n_trials", self.n_trials, low=1, high=100_000, kind=int)
        if self.timeout_s is not None:
            check_range("timeout_s", self.timeout_s, low=0, low_inclusive=False)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        check_range("epochs", self.epochs, low=1, high=1000, kind=int)
        check_range("latency_budget_s", self.latency_budget_s, low=0.005, high=10)
        check_range("grid_points", self.grid_points, low=2, high=50, kind=int)
        check_range("heartbeat_s", self.heartbeat_s, low=1, high=3600, kind=int)
        check_range("max_retry", self.max_retry, low=0, high=100, kind=int)
        if self.max_latency_ms is not None:
            check_range("max_latency_ms", self.max_latency_ms, low=0, low_inclusive=False)
        if self.max_size_bytes is not None:
            check_range("max_size_bytes", self.max_size_bytes, low=1, kind=int)

    def _check_mappings(self) -> None:
        """The study name is non-empty; train/model/pruner options are mappings of known keys."""
        if self.study_name is not None and not str(self.study_name).strip():
            raise InvalidParameterError("study_name", "a non-empty name", self.study_name)
        for name in ("train", "model_kwargs", "pruner_options"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise InvalidParameterError(name, "a mapping", value)
        unknown = sorted(set(self.pruner_options or {}) - set(PRUNER_OPTIONS))
        if unknown:
            raise InvalidParameterError("pruner_options", f"keys among {list(PRUNER_OPTIONS)}",
                                        unknown)

    def _check_space(self) -> None:
        """The search space names the model's or training's parameters (and is griddable)."""
        space = self.search_space()
        allowed = set(RECIPE_KEYS) if self.target == "recipe" else family_keys(self.model)
        bad = sorted(set(space.names) - allowed)
        if bad:
            raise InvalidParameterError(
                f"space.{bad[0]}", f"a parameter of the '{self.model}' model or of training "
                f"(one of {sorted(allowed)})", bad[0])
        bad = sorted(set(self.train or {}) - set(TRAIN_KEYS))
        if bad:
            raise InvalidParameterError(f"train.{bad[0]}", f"one of {list(TRAIN_KEYS)}", bad[0])
        if self.target == "recipe":
            _check_recipe_space(space)
        if self.sampler == "grid":
            size = space.grid_size(self.grid_points)
            if size > 100_000:
                raise InvalidParameterError("space", "small enough for a grid search "
                                            "(≤ 100000 points)", size)

    # --- derived ------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        spec = self.space if self.space is not None else default_space(self.target, self.model)
        return parse_space(spec)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def constraints(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.max_latency_ms is not None:
            out["latency_ms"] = float(self.max_latency_ms)
        if self.max_size_bytes is not None:
            out["size_bytes"] = float(self.max_size_bytes)
        return out

    @classmethod
    def from_file_dict(cls, values: Mapping[str, Any]) -> "TuneConfig":
        """A config from a YAML document: a plain config, or a ``study.yaml`` export."""
        values = dict(values or {})
        if "config" in values and isinstance(values["config"], Mapping):
            values = dict(values["config"])
        return cls.from_dict(values)


def _check_recipe_space(space: SearchSpace) -> None:
    """Recipe choices must name registered pruning/quantization methods (or 'none')."""
    from core.registry import list_methods

    for key, area in (("pruning_method", "pruning"), ("quantization_method", "quantization"),
                      ("fusion_method", "fusion")):
        if key not in space:
            continue
        known = ["none", *list_methods(area)]
        dim = space[key]
        bad = [c for c in dim.choices if c not in known] if dim.kind == "categorical" else [key]
        if bad:
            raise InvalidParameterError(f"space.{key}", f"a list of choices among {known}",
                                        bad[0])
    if "rank_ratio" in space and space["rank_ratio"].kind == "categorical":
        bad = [c for c in space["rank_ratio"].choices if c != "none" and not (
            isinstance(c, (int, float)) and not isinstance(c, bool) and 0 < c <= 1)]
        if bad:
            raise InvalidParameterError("space.rank_ratio", "choices in (0, 1] or 'none'",
                                        bad[0])


def split_params(params: Mapping[str, Any], family: str, fixed_train: Mapping[str, Any] | None,
                 fixed_model: Mapping[str, Any] | None, epochs: int, seed: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig kwargs, model kwargs) for one trial's parameters."""
    train = {"epochs": epochs, "seed": seed, **dict(fixed_train or {})}
    model: dict[str, Any] = dict(fixed_model or {})
    for key, value in params.items():
        (train if key in TRAIN_KEYS else model)[key] = value
    train["warmup_epochs"] = min(int(train.get("warmup_epochs", 0)), int(train["epochs"]))
    return train, arch_kwargs(family, model)


def arch_kwargs(family: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Turn architecture keys (depth, width, ...) into the family's constructor widths.

    cnn: ``channels = [width * width_growth**i for i < depth]`` (growth 2), ``head_width``
    adds a hidden linear layer; mlp: ``hidden_dims = [width * width_decay**i]`` (decay 1);
    vit: ``mlp_dim = dim * mlp_ratio``. Other keys pass through as constructor arguments.
    """
    out = dict(values)
    if family == "cnn" and ("depth" in out or "width" in out):
        depth = int(out.pop("depth", 2))
        width = int(out.pop("width", 16))
        growth = float(out.pop("width_growth", 2))
        out["channels"] = [max(1, int(round(width * growth**i))) for i in range(depth)]
    if family == "cnn" and "head_width" in out:
        head = int(out.pop("head_width"))
        out["hidden_dims"] = [head] if head > 0 else []
    out.pop("width_growth", None)
    if family == "mlp" and ("depth" in out or "width" in out):
        depth = int(out.pop("depth", 2))
        width = int(out.pop("width", 64))
        decay = float(out.pop("width_decay", 1))
        out["hidden_dims"] = [max(1, int(round(width * decay**i))) for i in range(depth)]
    out.pop("width_decay", None)
    if family == "vit" and "mlp_ratio" in out:
        out["mlp_dim"] = max(1, int(round(int(out.get("dim", 32)) * float(out.pop("mlp_ratio")))))
    return out
