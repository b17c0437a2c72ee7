"""Operator fusion: Conv/Linear + BatchNorm (+ ReLU/ReLU6), outputs checked, speed measured."""

from core.fusion._fuse import PATTERNS, FusedActivation, FusionInfo, fuse_model
from core.fusion._verb import DEFAULT_PATTERNS, FusionConfig, OperatorFuser, fuse

__all__ = ["DEFAULT_PATTERNS", "PATTERNS", "FusedActivation", "FusionConfig", "FusionInfo",
           "OperatorFuser", "fuse", "fuse_model"]
