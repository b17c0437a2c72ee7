"""Method registry: UI dropdowns and CLI choices are read from here, never hard-coded.

One registry for every area: each method has its name, the callable that runs it, its
config class (the verbs dispatch on the config's type) and an area-specific ``spec`` (how
the area runs it: a quantization method's layer lister and artifact, a pruning criterion).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from core.config import Config
from core.errors import InvalidParameterError

__all__ = ["MethodInfo", "MethodConfig", "SCHEMA_VERSION", "register_method", "get_method",
           "list_methods", "list_areas", "method_for_config", "config_schema"]

SCHEMA_VERSION = 1  # of every method config's dict form; from_dict reads this version
T = TypeVar("T", bound="MethodConfig")

_REGISTRY: dict[str, dict[str, "MethodInfo"]] = {}
AREAS = ("quantization", "pruning", "distillation", "tuning", "federated", "fusion",
         "lowrank", "continual")


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its area, name, the callable, its config class and its spec."""

    area: str
    name: str
    fn: Callable[..., Any]
    config_cls: type | None
    summary: str
    spec: Any = None  # the area's own description of how the method runs


def register_method(
    name: str, *, area: str, config: type | None = None, summary: str = "", spec: Any = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``@register_method("ort-static-int8", area="quantization", config=Cfg)``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = summary or (fn.__doc__ or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        _REGISTRY.setdefault(area, {})[name] = MethodInfo(area, name, fn, config, text, spec)
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
    for area in AREAS:
        _load_area(area)
    return sorted(_REGISTRY)


def get_method(area: str, name: str) -> MethodInfo:
    """The registered method, or a clear error listing the registered ones."""
    _load_area(area)
    methods = _REGISTRY.get(area, {})
    if name not in methods:
        raise InvalidParameterError("method", f"one of {sorted(methods)}", name)
    return methods[name]


def method_for_config(area: str, config: Any) -> MethodInfo:
    """The method a config object belongs to, found by its type (the config's class is
    registered with exactly one method); a shared config class (one for several methods)
    names its method in its ``method`` field."""
    _load_area(area)
    methods = _REGISTRY.get(area, {})
    owners = [m for m in methods.values() if m.config_cls is type(config)]
    if len(owners) == 1:
        return owners[0]
    named = methods.get(getattr(config, "method", None))  # a shared class, or a subclass
    if named is not None and named.config_cls is not None and \
            isinstance(config, named.config_cls):
        return named
    raise InvalidParameterError("config", f"a config of one of the {area} methods "
                                f"{sorted(methods)}", type(config).__name__)


@dataclass(frozen=True)
class MethodConfig(Config):
    """A method's frozen config that describes itself: ``to_dict()`` holds its ``method`` and
    ``schema_version``, and ``from_dict`` takes that dict back (or an older one without
    them). Constraints are declared on the fields (``Annotated[int, Field(ge=1)]``) for the
    published JSON schema; ``__post_init__`` enforces them with the studio's messages."""

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "schema_version": SCHEMA_VERSION,  # type: ignore
                **super().to_dict()}

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
        values = dict(values or {})
        version = values.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InvalidParameterError("schema_version", f"{SCHEMA_VERSION} (the config "
                                        "schema this studio reads)", version)
        if "method" not in {f.name for f in dataclasses.fields(cls)}:  # a class per method
            own = getattr(cls, "method", "")
            given = values.pop("method", own)
            if given != own:
                raise InvalidParameterError("method", f"'{own}' in a {cls.__name__}", given)
        return super().from_dict(values)


def config_schema(area: str, name: str) -> dict[str, Any]:
    """The JSON schema of a method's config (pydantic reads the dataclass and the
    constraints declared on its fields), with its ``method`` and ``schema_version``."""
    from pydantic import TypeAdapter

    info = get_method(area, name)
    if info.config_cls is None:
        raise InvalidParameterError("method", f"a {area} method with a config", name)
    schema = TypeAdapter(info.config_cls).json_schema()
    props = schema.setdefault("properties", {})
    props["method"] = {"const": name, "default": name, "title": "Method", "type": "string"}
    props["schema_version"] = {"const": SCHEMA_VERSION, "default": SCHEMA_VERSION,
                               "title": "Schema Version", "type": "integer"}
    schema["title"] = name
    if info.summary:
        schema["description"] = "\n\n".join(filter(None, [info.summary,
                                                            schema.get("description")]))
    return schema
