"""Recipes as data: an ordered list of steps (train, prune, finetune, distill, factorize, fuse,
quantize, export).

YAML form::

    name: prune-finetune-int8
    model: cnn            # a built-in family (trained by a 'train' step) or a run folder/file
    data: digits
    steps:
      - train: {epochs: 10}
      - prune: {method: structured-l2, sparsity: 0.5, finetune_epochs: 3}
      - finetune: {epochs: 2, lr: 0.002}
      - factorize: {rank_ratio: 0.5, finetune_epochs: 2}   # low-rank, then fine-tuned
      - fuse: {patterns: [conv-bn-relu]}
      - quantize: {method: ort-static-int8}
      - export: {}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from core.config import load_yaml
from core.errors import InvalidParameterError, check_range

__all__ = ["STEP_KINDS", "Recipe", "Step", "step_config"]

STEP_KINDS = ("train", "prune", "finetune", "distill", "factorize", "fuse", "quantize",
              "export")
_DISTILL_PATHS = ("student", "teachers", "unlabelled")


@dataclass(frozen=True)
class Step:
    """One step: its kind and its (validated) options."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: dict(self.options)}


def step_config(step: Step) -> Any:
    """The validated config object a step runs with (raises a clear error when invalid)."""
    opts = dict(step.options)
    if step.kind in ("train", "finetune"):
        from core.training import TrainConfig

        return TrainConfig.from_dict(opts)
    if step.kind == "prune":
        from core.pruning import PruningConfig

        return PruningConfig.from_dict(opts)
    if step.kind == "distill":
        from core.distillation import DistillConfig

        return DistillConfig.from_dict(opts)
    if step.kind == "factorize":
        from core.lowrank import LowRankConfig

        return LowRankConfig.from_dict(opts)
    if step.kind == "fuse":
        from core.fusion import FusionConfig

        return FusionConfig.from_dict(opts)
    if step.kind == "quantize":
        from core.quantization import make_config

        method = opts.pop("method", "ort-static-int8")
        return make_config(method, opts)
    if step.kind == "export":
        if opts:
            raise InvalidParameterError(sorted(opts)[0], "absent (export takes no options)",
                                        opts[sorted(opts)[0]])
        return None
    raise InvalidParameterError("step", f"one of {list(STEP_KINDS)}", step.kind)


@dataclass(frozen=True)
class Recipe:
    """A model source, a data set, ordered steps, and the parity limits between steps."""

    steps: tuple[Step, ...]
    model: str = "cnn"
    data: str = "digits"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "recipe"
    parity_atol: float = 1e-3
    parity_min_agreement: float = 0.95

    def __post_init__(self) -> None:
        if not self.steps:
            raise InvalidParameterError("steps", "a non-empty list of steps", [])
        check_range("parity_atol", self.parity_atol, low=0, high=1e3)
        check_range("parity_min_agreement", self.parity_min_agreement, low=0, high=1)
        kinds = [s.kind for s in self.steps]
        if "train" in kinds[1:]:
            raise InvalidParameterError("steps", "with 'train' only as the first step", kinds)
        if "export" in kinds[:-1]:
            raise InvalidParameterError("steps", "with 'export' only as the last step", kinds)
        if kinds[0] == "train":
            from core.models import list_families

            if self.model not in list_families():
                raise InvalidParameterError("model", f"a built-in family {list_families()} "
                                            "when the first step is 'train'", self.model)
        for step in self.steps:
            step_config(step)

    @property
    def trains(self) -> bool:
        return self.steps[0].kind == "train"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "data": self.data,
                "model_kwargs": dict(self.model_kwargs),
                "parity": {"atol": self.parity_atol, "min_agreement": self.parity_min_agreement},
                "steps": [s.to_dict() for s in self.steps]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, allow_paths: bool = True) -> "Recipe":
        """Parse and validate; ``allow_paths=False`` (REST API) refuses server paths."""
        if not isinstance(values, Mapping):
            raise InvalidParameterError("recipe", "a mapping with 'steps'", type(values).__name__)
        known = {"name", "model", "data", "model_kwargs", "parity", "steps"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidParameterError(unknown[0], f"one of the recipe keys {sorted(known)}",
                                        values[unknown[0]])
        raw_steps = values.get("steps")
        if not isinstance(raw_steps, list):
            raise InvalidParameterError("steps", "a list of steps", raw_steps)
        steps = tuple(_parse_step(s, i) for i, s in enumerate(raw_steps))
        parity = dict(values.get("parity") or {})
        bad = sorted(set(parity) - {"atol", "min_agreement"})
        if bad:
            raise InvalidParameterError(f"parity.{bad[0]}", "one of ['atol', 'min_agreement']",
                                        parity[bad[0]])
        model, data = str(values.get("model", "cnn")), str(values.get("data", "digits"))
        if not allow_paths:
            from core.data import list_datasets

            if data not in list_datasets():
                raise InvalidParameterError("data", f"a built-in data set {list_datasets()}",
                                            data)
            if not steps or steps[0].kind != "train":
                raise InvalidParameterError("steps", "starting with 'train' (server paths are "
                                            "not accepted here)", [s.kind for s in steps])
            for s in steps:
                for key in _DISTILL_PATHS:
                    if s.kind == "distill" and s.options.get(key):
                        raise InvalidParameterError(key, "unset (server paths are not "
                                                    "accepted here)", s.options[key])
        kwargs = values.get("model_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise InvalidParameterError("model_kwargs", "a mapping of model widths", kwargs)
        return cls(steps=steps, model=model, data=data, model_kwargs=dict(kwargs),
                   name=str(values.get("name", "recipe")),
                   parity_atol=parity.get("atol", 1e-3),
                   parity_min_agreement=parity.get("min_agreement", 0.95))

    @classmethod
    def from_yaml(cls, text: str, *, allow_paths: bool = True) -> "Recipe":
        try:
            values = load_yaml(text)
        except yaml.YAMLError as exc:
            raise InvalidParameterError("recipe", "valid YAML", str(exc).splitlines()[0]) from None
        return cls.from_dict(values or {}, allow_paths=allow_paths)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise InvalidParameterError("recipe", "an existing YAML file", str(path))
        return cls.from_yaml(path.read_text())


def _parse_step(raw: Any, index: int) -> Step:
    if isinstance(raw, str):
        raw = {raw: {}}
    if isinstance(raw, Mapping) and "step" in raw:
        raw = {raw["step"]: {k: v for k, v in raw.items() if k != "step"}}
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise InvalidParameterError(f"steps[{index}]", "a mapping with one step kind, e.g. "
                                    "{prune: {sparsity: 0.5}}", raw)
    (kind, options), = raw.items()
    if kind not in STEP_KINDS:
        raise InvalidParameterError(f"steps[{index}]", f"one of {list(STEP_KINDS)}", kind)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise InvalidParameterError(f"steps[{index}].{kind}", "a mapping of options", options)
    return Step(str(kind), dict(options))
