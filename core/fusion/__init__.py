"""Operator fusion: Conv/Linear + BatchNorm (+ ReLU/ReLU6), outputs checked, speed measured.

The config, pattern names and verb load without torch (the studio's server lists them);
the torch parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.fusion._patterns import PATTERNS
from core.fusion._verb import DEFAULT_PATTERNS, FusionConfig, OperatorFuser, fuse

_LAZY = {"FusedActivation": "core.fusion._fuse", "FusionInfo": "core.fusion._fuse",
         "fuse_model": "core.fusion._fuse"}

__all__ = ["DEFAULT_PATTERNS", "PATTERNS", "FusedActivation", "FusionConfig", "FusionInfo",
           "OperatorFuser", "fuse", "fuse_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.fusion' has no attribute {name!r}")
