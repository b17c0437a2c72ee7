"""Built-in model families: ``mlp``, ``cnn`` and ``vit``, with explicit widths.

Everything but ``list_families`` is loaded from ``_families`` (torch) on first use, so that
the studio's server lists the families without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# The names core.models._families registers (a test keeps the two equal): listed here so
# that listing them needs no torch.
FAMILY_NAMES = ("mlp", "cnn", "vit")

_LAZY = ("CNN", "DEFAULTS", "MLP", "ModelSpec", "ViT", "build_model", "count_parameters",
         "is_builtin", "model_for_data", "model_kwargs_for_data")

__all__ = sorted([*_LAZY, "FAMILY_NAMES", "list_families"])


def list_families() -> list[str]:
    """Names of the built-in families."""
    return list(FAMILY_NAMES)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("core.models._families"), name)
    raise AttributeError(f"module 'core.models' has no attribute {name!r}")
