"""Configs are frozen dataclasses that validate themselves and round-trip to dict/YAML."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import yaml

from core.errors import InvalidParameterError

__all__ = ["SEED_MAX", "Config", "UnsafeYamlError", "load_yaml"]

# The largest seed a config takes: numpy's RandomState (Optuna's samplers, scikit-learn's
# splits) refuses more, torch anything past 2**64 - 1 (a bare "Overflow" from a job's child).
SEED_MAX = 2**32 - 1

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
        return cls.from_dict(load_yaml(text))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class UnsafeYamlError(yaml.YAMLError):
    """YAML whose aliases expand it far beyond its text, that refers to itself, or that is
    nested too deeply to read."""


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` for text a user sent, bounded: aliases (``*name``) may not expand it
    past max(1,000,000, 2 x its length) characters ("billion laughs": 1 KB of aliases made
    10^8 values, 17 s and 0.8 GB to print in an error), nor refer to themselves."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise UnsafeYamlError("it is nested too deeply to read") from None
        if node is None:
            return None
        _check_expanded_size(node, max(1_000_000, 2 * len(text)))
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expanded_size(root: yaml.Node, limit: int) -> None:
    """Raise UnsafeYamlError when ``root`` expanded (each alias counted as often as it is
    used) is over ``limit`` characters, or contains itself. Iterative: no depth limit."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            if sizes[id(node)] < 0 and not children_done:
                raise UnsafeYamlError("an alias (*name) refers to the value that contains it")
            if sizes[id(node)] >= 0:
                continue
        children = _children(node)
        if not children_done:
            sizes[id(node)] = -1  # in progress: meeting it again below is a cycle
            stack.append((node, True))
            stack.extend((c, False) for c in children)
            continue
        sizes[id(node)] = 1 + (len(node.value) if isinstance(node, yaml.ScalarNode)
                               else sum(sizes[id(c)] for c in children))
        if sizes[id(node)] > limit:
            raise UnsafeYamlError(f"its aliases (*name) expand it past {limit:,} characters")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
