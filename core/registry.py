"""Method registry: UI dropdowns and CLI choices are read from here, never hard-coded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from core.errors import InvalidParameterError

__all__ = ["MethodInfo", "register_method", "get_method", "list_methods", "list_areas"]

_REGISTRY: dict[str, dict[str, "MethodInfo"]] = {}


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its area, name, the callable and its config class."""

    area: str
    name: str
    fn: Callable[..., Any]
    config_cls: type | None
    summary: str


def register_method(
    name: str, *, area: str, config: type | None = None, summary: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``@register_method("ort-static-int8", area="quantization", config=Cfg)``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = summary or (fn.__doc__ or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        _REGISTRY.setdefault(area, {})[name] = MethodInfo(area, name, fn, config, text)
        return fn

    return decorate


def _load_area(area: str) -> None:
    """Import an area's package so that its methods register themselves."""
    import importlib

    try:
        importlib.import_module(f"core.{area}")
    except ModuleNotFoundError:
        pass


def list_methods(area: str) -> list[str]:
    """Names of the methods registered in an area, in registration order."""
    _load_area(area)
    return list(_REGISTRY.get(area, {}))


def list_areas() -> list[str]:
    """Areas that have at least one registered method."""
    for area in ("quantization", "pruning", "distillation", "tuning", "federated", "fusion",
                 "lowrank", "continual"):
        _load_area(area)
    return sorted(_REGISTRY)


def get_method(area: str, name: str) -> MethodInfo:
    """The registered method, or a clear error listing the registered ones."""
    _load_area(area)
    methods = _REGISTRY.get(area, {})
    if name not in methods:
        raise InvalidParameterError("method", f"one of {sorted(methods)}", name)
    return methods[name]
