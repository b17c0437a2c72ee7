"""One exception root for the studio; bad input raises a subclass with a clear message."""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath
from typing import Any

__all__ = [
    "StudioError",
    "InvalidParameterError",
    "DataError",
    "ModelFileError",
    "UnsupportedModelError",
    "CancelledError",
    "check_range",
    "without_paths",
]


class StudioError(Exception):
    """Root of every error the studio raises on purpose (UI: gr.Error, CLI: exit 2)."""


class InvalidParameterError(StudioError, ValueError):
    """A parameter is outside its allowed values."""

    def __init__(self, name: str, rule: str, value: Any) -> None:
        self.name, self.rule, self.value = name, rule, value
        super().__init__(f"The '{name}' parameter must be {rule}. Got {value!r} instead.")


class DataError(StudioError, ValueError):
    """A data set cannot be used (missing label column, NaNs, wrong shape...)."""


class ModelFileError(StudioError, ValueError):
    """A model file is not one the studio loads (pickle, unknown format, corrupt)."""


class UnsupportedModelError(StudioError):
    """A method cannot handle this model (e.g. an operator that does not export)."""


class CancelledError(StudioError):
    """The user stopped the job; nothing half-written is kept."""


def check_range(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    kind: type = float,
) -> None:
    """Raise InvalidParameterError unless ``low <= value <= high`` (bounds as given)."""
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    ok = ok_type and value == value  # NaN fails
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        left = "[" if low_inclusive and low is not None else "("
        right = "]" if high_inclusive and high is not None else ")"
        noun = "an integer" if kind is int else "a float"
        raise InvalidParameterError(name, f"{noun} in {left}{lo}, {hi}{right}", value)


# An absolute POSIX path (not the tail of a URL, a ratio or a relative path), also as a
# file:// URL (then the whole URL becomes the base name).
_ABSOLUTE_PATH = re.compile(r"(?:file://(?:localhost)?|(?<![\w.~/-]))"
                            r"(?P<path>(?:/[^\s'\"/:,;()\[\]<>]+)+/?)")


def without_paths(text: str) -> str:
    """``text`` with each absolute path on this machine (its top folder exists) shown by its
    base name: a library's message (ONNX Runtime, the ONNX checker) names server paths, which
    a message to a user never does. ONNX node names such as '/features/features.0/Conv' look
    absolute too and stay whole (they say which node failed)."""
    return _ABSOLUTE_PATH.sub(_base_name_if_here, text)


def _base_name_if_here(match: re.Match) -> str:
    path = PurePosixPath(match.group("path"))
    here = len(path.parts) >= 2 and os.path.isdir(os.path.join(*path.parts[:2]))
    return path.name if here else match.group(0)
