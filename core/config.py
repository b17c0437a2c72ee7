"""Configs are frozen dataclasses that validate themselves and round-trip to dict/YAML."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import yaml

from core.errors import InvalidParameterError

__all__ = ["Config"]

T = TypeVar("T", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: subclasses are ``@dataclass(frozen=True)`` and validate in __post_init__."""

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InvalidParameterError(unknown[0], f"one of {sorted(names)}", values[unknown[0]])
        for f in dataclasses.fields(cls):
            if f.name in values and isinstance(values[f.name], list):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls: type[T], text: str) -> T:
        return cls.from_dict(yaml.safe_load(text))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
