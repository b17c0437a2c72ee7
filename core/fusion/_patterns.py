"""Fusion pattern names and the seed spellings of them (no torch: the UI lists them)."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidParameterError

# Seed spellings ("Conv2D", "BatchNorm", "ReLU") → the studio's pattern tokens.
_TOKENS = {"conv": "conv", "conv1d": "conv", "conv2d": "conv", "conv3d": "conv",
           "linear": "linear", "dense": "linear", "batchnorm": "bn", "bn": "bn",
           "batchnorm1d": "bn", "batchnorm2d": "bn", "batchnorm3d": "bn", "relu": "relu",
           "relu6": "relu6"}
PATTERNS = ("conv-bn", "conv-bn-relu", "conv-bn-relu6", "conv-relu", "conv-relu6",
            "linear-bn", "linear-bn-relu", "linear-relu", "linear-relu6")


def normalize_pattern(pattern: Any) -> str:
    """``["Conv2D", "BatchNorm", "ReLU"]`` or ``"conv-bn-relu"`` → ``"conv-bn-relu"``."""
    parts = pattern.split("-") if isinstance(pattern, str) else list(pattern)
    tokens = [_TOKENS.get(str(p).strip().lower().replace("_", "")) for p in parts]
    name = "-".join(t or "?" for t in tokens)
    if name not in PATTERNS:
        raise InvalidParameterError("patterns", f"made of {list(PATTERNS)} (or the seed's "
                                    "spellings such as ['Conv2D', 'BatchNorm', 'ReLU'])", pattern)
    return name
