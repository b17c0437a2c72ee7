"""The training options of ``studio train`` (TrainConfig's), shared by verbs that train."""

from __future__ import annotations

import argparse
from typing import Any

from core.training._options import LR_SCHEDULES, PRECISIONS


def add_train_options(p: argparse.ArgumentParser) -> None:
    """--precision, --grad-accum-steps, --grad-checkpointing, --label-smoothing, --mixup-alpha,
    --cutmix-alpha, --lr-schedule, --lr-step-epochs, --lr-gamma (defaults: TrainConfig's)."""
    g = p.add_argument_group("training options (each measured: time per epoch, peak memory)")
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="bf16: bfloat16 autocast where the CPU computes it natively "
                        "(AVX-512 BF16 / AMX), else fp32 and a warning (default: fp32)")
    g.add_argument("--grad-accum-steps", type=int, default=1,
                   help="optimiser step every N batches: an N× larger effective batch "
                        "(default: 1)")
    g.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute block activations in the backward pass to save memory "
                        "(built-in vit and mlp; default: off)")
    g.add_argument("--label-smoothing", type=float, default=0.0,
                   help="cross-entropy label smoothing in [0, 1) (default: 0)")
    g.add_argument("--mixup-alpha", type=float, default=0.0,
                   help="mixup Beta(α, α) batch mixing, 0 = off (default: 0)")
    g.add_argument("--cutmix-alpha", type=float, default=0.0,
                   help="CutMix Beta(α, α) patch mixing for image data, 0 = off; with mixup, "
                        "one of the two per batch (default: 0)")
    g.add_argument("--lr-schedule", default="cosine", choices=list(LR_SCHEDULES),
                   help="learning-rate schedule per optimiser step: cosine (after warm-up), "
                        "constant, step (×--lr-gamma every --lr-step-epochs), onecycle "
                        "(default: cosine)")
    g.add_argument("--lr-step-epochs", type=int, default=None,
                   help="epochs between step-schedule decays (default: epochs/3)")
    g.add_argument("--lr-gamma", type=float, default=0.1,
                   help="step-schedule decay factor in (0, 1] (default: 0.1)")


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the options above set."""
    return {"precision": args.precision, "grad_accum_steps": args.grad_accum_steps,
            "grad_checkpointing": bool(args.grad_checkpointing),
            "label_smoothing": args.label_smoothing, "mixup_alpha": args.mixup_alpha,
            "cutmix_alpha": args.cutmix_alpha, "lr_schedule": args.lr_schedule,
            "lr_step_epochs": args.lr_step_epochs, "lr_gamma": args.lr_gamma}
