"""Auto-optimizer: candidate recipes for this hardware, run, measured side by side, explained."""

from core.auto._auto import auto, choose, pick_per_batch, reselect
from core.auto._candidates import CANDIDATE_NAMES, Candidate, propose
from core.auto._config import TARGETS, AutoConfig
from core.auto._facade import AutoOptimizer, dataset_from_loaders

__all__ = [
    "CANDIDATE_NAMES",
    "TARGETS",
    "AutoConfig",
    "AutoOptimizer",
    "Candidate",
    "auto",
    "choose",
    "dataset_from_loaders",
    "pick_per_batch",
    "propose",
    "reselect",
]

from core._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, auto)  # ``from core import auto`` is callable
