"""Training and evaluation with progress callbacks and cancellation."""

from core.measure import Metrics, evaluate
from core.training._finetune import (
    FinetuneDefaults,
    FinetuneResult,
    distillation_loss,
    finetune,
    finetune_defaults,
    model_traits,
    recalibrate_batchnorm,
)
from core.training._train import (
    TrainConfig,
    TrainResult,
    check_model_fits,
    seed_everything,
    train,
)

__all__ = ["FinetuneDefaults", "FinetuneResult", "Metrics", "TrainConfig", "TrainResult",
           "check_model_fits", "distillation_loss", "evaluate", "finetune", "finetune_defaults",
           "model_traits", "recalibrate_batchnorm", "seed_everything", "train"]
