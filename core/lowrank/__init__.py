"""Low-rank factorization (truncated SVD) of Linear and Conv2d layers, measured."""

from core.lowrank._factorize import (
    FactorizationInfo,
    factorizable_layers,
    factorize_model,
    rank_for,
)
from core.lowrank._verb import LowRankConfig, LowRankFactorizer, factorize

__all__ = ["FactorizationInfo", "LowRankConfig", "LowRankFactorizer", "factorizable_layers",
           "factorize", "factorize_model", "rank_for"]
