"""Knowledge distillation: a small student trained from a teacher, next to a label-only twin.

Every run trains both the distilled student and the same student on labels only (same
epochs, seed and data) and reports the teacher, both students and the gain, measured.
"""

from core.distillation import _methods  # noqa: F401  (registers the methods)
from core.distillation._config import DistillConfig
from core.distillation._distill import distill
from core.distillation._student import build_student, scaled_spec
from core.distillation._transfer import TransferSet, build_transfer_set, read_unlabelled

__all__ = [
    "DistillConfig",
    "TransferSet",
    "build_student",
    "build_transfer_set",
    "distill",
    "read_unlabelled",
    "scaled_spec",
]
