"""Training and evaluation with progress callbacks and cancellation."""

from core.measure import Metrics, evaluate
from core.training._train import TrainConfig, TrainResult, seed_everything, train

__all__ = ["Metrics", "TrainConfig", "TrainResult", "evaluate", "seed_everything", "train"]
