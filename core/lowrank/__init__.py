"""Low-rank factorization (truncated SVD) of Linear and Conv2d layers, measured.

The config and verb load without torch (the studio's server lists them); the torch parts
load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.lowrank._verb import LowRankConfig, LowRankFactorizer, factorize

_LAZY = ("FactorizationInfo", "factorizable_layers", "factorize_model", "rank_for")

__all__ = ["FactorizationInfo", "LowRankConfig", "LowRankFactorizer", "factorizable_layers",
           "factorize", "factorize_model", "rank_for"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("core.lowrank._factorize"), name)
    raise AttributeError(f"module 'core.lowrank' has no attribute {name!r}")
