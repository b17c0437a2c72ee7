"""Method registry: UI dropdowns and CLI choices are read from here, never hard-coded.

One registry for every area: each method has its name, the callable that runs it, its
config class (the verbs dispatch on the config's type) and an area-specific ``spec`` (how
the area runs it: a quantization method's layer lister and artifact, a pruning criterion).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from core.config import Config
from core.errors import InvalidParameterError

__all__ = ["MethodInfo", "MethodConfig", "SCHEMA_VERSION", "register_method", "get_method",
           "list_methods", "list_areas", "method_for_config", "config_schema", "resolve_config"]

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
    named = methods.get(getattr(config, getattr(config, "method_field", "method"), None))
    if named is not None and named.config_cls is not None and \
            isinstance(config, named.config_cls):
        return named
    raise InvalidParameterError("config", f"a config of one of the {area} methods "
                                f"{sorted(methods)}", type(config).__name__)


def resolve_config(config: Any, overrides: Mapping[str, Any] | None = None, *,
                   area: str | None = None, cls: type | None = None) -> Any:
    """The config a verb runs with: ``config`` is a config object, a mapping of its fields (a
    ``to_dict()`` too) or a method name of ``area``; ``overrides`` replace its fields.

    ``cls`` is the area's config class (one for every method, or their shared base); with
    nothing given it is built with its defaults. An unknown field, an unknown method or a
    config of another area is one :class:`InvalidParameterError` naming it.
    """
    overrides = dict(overrides or {})
    if isinstance(config, str) and not (area and list_methods(area)):
        raise InvalidParameterError("config", f"a config ({getattr(cls, '__name__', '')}) or "
                                    "a mapping of its fields (this area has no method names)",
                                    config)
    if config is None or isinstance(config, (str, Mapping)):
        values = {"method": config} if isinstance(config, str) else dict(config or {})
        values.update(overrides)
        return _config_class(values, area, cls).from_dict(values)
    _check_config_object(config, area, cls)
    if not overrides:
        return config
    fields = {f.name for f in dataclasses.fields(config)}
    field = getattr(config, "method_field", "method")
    if "method" in overrides and field in fields:  # one class for several methods
        overrides[field] = overrides.pop("method")
    elif "method" in overrides:  # a class per method: its method cannot change
        own, given = getattr(config, "method", None), overrides.pop("method")
        if given != own:
            raise InvalidParameterError("method", f"unset or '{own}' (the method of the "
                                        f"{type(config).__name__} given)", given)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InvalidParameterError(unknown[0], f"one of {sorted(fields)}", overrides[unknown[0]])
    return dataclasses.replace(config, **{k: tuple(v) if isinstance(v, list) else v
                                          for k, v in overrides.items()})


def _config_class(values: dict[str, Any], area: str | None, cls: type | None) -> type:
    """The config class a mapping is read into: its method's (``area``) or ``cls``."""
    name = values.get("method")
    methods = list_methods(area) if area else []
    if not methods or (name is None and cls is not None):
        if cls is None:
            raise InvalidParameterError("method", f"one of {methods}", name)
        return cls
    info = get_method(area, name)  # type: ignore[arg-type]  (an unknown name: one of [...])
    target = info.config_cls or cls
    if target is None:
        raise InvalidParameterError("method", f"a {area} method with a config", name)
    return target


def _check_config_object(config: Any, area: str | None, cls: type | None) -> None:
    """Refuse an object that is no config of this area (a registered method's, or ``cls``)."""
    if cls is not None and not isinstance(config, cls):
        raise InvalidParameterError("config", f"a config ({cls.__name__}), a mapping of its fields"
                                    + (" or a method name" if area else ""),
                                    type(config).__name__)
    if area and list_methods(area):
        method_for_config(area, config)


@dataclass(frozen=True)
class MethodConfig(Config):
    """A method's frozen config that describes itself: ``to_dict()`` holds its ``method`` and
    ``schema_version``, and ``from_dict`` takes that dict back (or an older one without
    them). Constraints are declared on the fields (``Annotated[int, Field(ge=1)]``) for the
    published JSON schema; ``__post_init__`` enforces them with the studio's messages.

    The method is a class attribute (a class per method), the ``method`` field (one class for
    several methods) or the field named by ``method_field`` (e.g. tuning's ``sampler``)."""

    method_field: ClassVar[str] = "method"
    retired_keys: ClassVar[tuple[str, ...]] = ()  # keys older dicts hold, read and dropped

    def to_dict(self) -> dict[str, Any]:
        return {"method": getattr(self, self.method_field), "schema_version": SCHEMA_VERSION,
                **super().to_dict()}

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
        values = {k: v for k, v in (values or {}).items()
                  if k not in cls.retired_keys}  # type: ignore[attr-defined]
        version = values.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise InvalidParameterError("schema_version", f"{SCHEMA_VERSION} (the config "
                                        "schema this studio reads)", version)
        field = cls.method_field  # type: ignore[attr-defined]
        if field not in {f.name for f in dataclasses.fields(cls)}:  # a class per method
            own = getattr(cls, "method", "")
            given = values.pop("method", own)
            if given != own:
                raise InvalidParameterError("method", f"'{own}' in a {cls.__name__}", given)
        elif field != "method" and "method" in values:  # the method's name in its own field
            given = values.pop("method")
            if values.setdefault(field, given) != given:
                raise InvalidParameterError("method", f"unset or equal to '{field}' "
                                            f"({values[field]!r})", given)
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
    field = getattr(info.config_cls, "method_field", "method")
    if field in props and field != "method":  # e.g. tuning's sampler: this method's name
        props[field] = {**props["method"], "title": field.replace("_", " ").title()}
    props["schema_version"] = {"const": SCHEMA_VERSION, "default": SCHEMA_VERSION,
                               "title": "Schema Version", "type": "integer"}
    schema["title"] = name
    if info.summary:
        schema["description"] = "\n\n".join(filter(None, [info.summary,
                                                            schema.get("description")]))
    return schema
