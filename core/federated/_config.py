"""The scalability experiment's configuration (a frozen, self-validating dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig

ALGORITHMS = ("fedavg", "fedprox", "reptile")
ALIASES = {"fedmeta": "reptile", "fomaml": "reptile", "meta": "reptile"}
ENGINES = ("vectorized", "loop", "flower")
ENGINE_ALIASES = {"builtin": "vectorized", "vmap": "vectorized"}


@dataclass(frozen=True)
class ScaleConfig(MethodConfig):
    """A federated scalability experiment: client counts, rounds, algorithm and realism knobs.

    FedAvg/FedProx clients run ``local_epochs`` passes of SGD (``lr``, ``batch_size``);
    FedProx adds ``mu/2·||w − w_global||²``. Reptile (first-order federated meta-learning)
    runs ``inner_steps`` SGD steps at ``inner_lr`` and moves the global model by
    ``outer_lr`` towards the clients' mean. Every algorithm reports the clients' accuracy
    after ``adapt_steps`` local steps at ``inner_lr`` (personalisation).
    """

    method_field: ClassVar[str] = "algorithm"  # the registered federated methods

    # Constraints declared for the published JSON schema; __post_init__ enforces them.
    client_counts: tuple[Annotated[int, Field(ge=1)], ...] = (4, 10, 25, 50, 100)
    rounds: Annotated[int, Field(ge=1, le=100_000)] = 20
    samples_per_client: Annotated[int, Field(ge=1)] = 35
    algorithm: str = "fedavg"  # one of ALGORITHMS, or an alias (ALIASES)
    local_epochs: Annotated[int, Field(ge=1, le=1000)] = 1
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    lr: Annotated[float, Field(gt=0, le=10)] = 0.1
    mu: Annotated[float, Field(ge=0, le=100)] = 0.01
    inner_lr: Annotated[float, Field(gt=0, le=10)] = 0.05
    inner_steps: Annotated[int, Field(ge=1, le=10_000)] = 5
    outer_lr: Annotated[float, Field(gt=0, le=10)] = 1.0
    adapt_steps: Annotated[int, Field(ge=0, le=10_000)] = 5
    client_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    stragglers: Annotated[float, Field(ge=0, lt=1)] = 0.0
    alpha: Annotated[float, Field(gt=0)] | None = None
    feature_shift: Annotated[float, Field(ge=0, le=100)] = 0.0
    quantity_skew: Annotated[float, Field(ge=0, le=3)] = 0.0
    local_test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.25
    input_dim: Annotated[int, Field(ge=1)] = 9
    num_classes: Annotated[int, Field(ge=2)] = 4
    engine: str = "vectorized"  # one of ENGINES, or an alias (ENGINE_ALIASES)
    chunk_size: Annotated[int, Field(ge=0)] = 0
    chunk_memory_mb: Annotated[float, Field(gt=0)] = 64.0
    convergence_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01
    memory_limit_mb: Annotated[float, Field(gt=0)] | None = None
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0

    def __post_init__(self) -> None:
        counts = self.client_counts
        if isinstance(counts, int) and not isinstance(counts, bool):
            counts = (counts,)
        counts = tuple(counts) if isinstance(counts, (list, tuple)) else counts
        if (not isinstance(counts, tuple) or not counts or any(
                not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in counts)):
            raise InvalidParameterError("client_counts", "a non-empty list of positive integers",
                                        self.client_counts)
        object.__setattr__(self, "client_counts", counts)
        check_range("rounds", self.rounds, low=1, high=100_000, kind=int)
        check_range("samples_per_client", self.samples_per_client, low=1, kind=int)
        algo = ALIASES.get(str(self.algorithm).lower(), str(self.algorithm).lower())
        if algo not in ALGORITHMS:
            raise InvalidParameterError("algorithm", f"one of {list(ALGORITHMS)} (or 'fedmeta')",
                                        self.algorithm)
        object.__setattr__(self, "algorithm", algo)
        engine = ENGINE_ALIASES.get(str(self.engine).lower(), str(self.engine).lower())
        if engine not in ENGINES:
            raise InvalidParameterError("engine", "one of ['builtin', 'vectorized', 'loop', "
                                        "'flower']", self.engine)
        object.__setattr__(self, "engine", engine)
        check_range("local_epochs", self.local_epochs, low=1, high=1000, kind=int)
        check_range("batch_size", self.batch_size, low=1, high=65_536, kind=int)
        check_range("lr", self.lr, low=0, high=10, low_inclusive=False)
        check_range("mu", self.mu, low=0, high=100)
        check_range("inner_lr", self.inner_lr, low=0, high=10, low_inclusive=False)
        check_range("inner_steps", self.inner_steps, low=1, high=10_000, kind=int)
        check_range("outer_lr", self.outer_lr, low=0, high=10, low_inclusive=False)
        check_range("adapt_steps", self.adapt_steps, low=0, high=10_000, kind=int)
        check_range("client_fraction", self.client_fraction, low=0, high=1, low_inclusive=False)
        check_range("stragglers", self.stragglers, low=0, high=1, high_inclusive=False)
        if self.alpha is not None:
            check_range("alpha", self.alpha, low=0, low_inclusive=False)
        check_range("feature_shift", self.feature_shift, low=0, high=100)
        check_range("quantity_skew", self.quantity_skew, low=0, high=3)
        check_range("local_test_fraction", self.local_test_fraction, low=0, high=1,
                    high_inclusive=False)
        check_range("input_dim", self.input_dim, low=1, kind=int)
        check_range("num_classes", self.num_classes, low=2, kind=int)
        check_range("chunk_size", self.chunk_size, low=0, kind=int)
        check_range("chunk_memory_mb", self.chunk_memory_mb, low=0, low_inclusive=False)
        check_range("convergence_tolerance", self.convergence_tolerance, low=0, high=1)
        if self.memory_limit_mb is not None:
            check_range("memory_limit_mb", self.memory_limit_mb, low=0, low_inclusive=False)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
