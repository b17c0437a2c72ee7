"""Training and evaluation with progress callbacks and cancellation."""

from core.measure import Metrics, evaluate
from core.training._finetune import (
    FinetuneResult,
    distillation_loss,
    finetune,
    recalibrate_batchnorm,
)
from core.training._train import TrainConfig, TrainResult, seed_everything, train

__all__ = ["FinetuneResult", "Metrics", "TrainConfig", "TrainResult", "distillation_loss",
           "evaluate", "finetune", "recalibrate_batchnorm", "seed_everything", "train"]
