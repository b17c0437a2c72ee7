"""``studio prune``: prune a run folder or model file and write DIR/report.json + artifacts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Define ``studio prune`` (method choices are read from the registry)."""
    from core.cli import add_common, add_data
    from core.pruning._config import ATTENTION_MODES, SCHEDULES, PruningConfig
    from core.pruning._criteria import method_names

    p = subparsers.add_parser(
        "prune", help="prune a model (structured: smaller + faster; unstructured: smaller file)",
        description="Prune a model and measure it side by side with the original.")
    p.add_argument("--model", required=True,
                   help="a studio run folder, or a TorchScript .pt / torch.export .pt2 file")
    add_data(p, default=None,
             help="built-in name, .csv or .npz (default: the run folder's data set)")
    p.add_argument("--method", default="structured-l2", choices=method_names(),
                   help="registered pruning method (see `studio methods pruning`)")
    p.add_argument("--sparsity", type=float, default=0.5,
                   help="fraction removed: channels per layer (structured) or weights "
                        "(unstructured), 0.05–0.95")
    p.add_argument("--schedule", default="oneshot", choices=list(SCHEDULES),
                   help="prune at once (default), in --steps growing steps (gradual: cubic), "
                        "or linearly from --start-epoch to --end-epoch (linear), each step "
                        "followed by fine-tuning")
    p.add_argument("--steps", type=int, default=None,
                   help="pruning steps of the gradual (cubic) schedule (default 3)")
    p.add_argument("--start-epoch", type=int, default=PruningConfig.start_epoch,
                   help="linear schedule: sparsity 0 up to this epoch (default "
                        f"{PruningConfig.start_epoch})")
    p.add_argument("--end-epoch", type=int, default=PruningConfig.end_epoch,
                   help="linear schedule: full --sparsity from this epoch on (default "
                        f"{PruningConfig.end_epoch})")
    p.add_argument("--frequency", type=int, default=PruningConfig.frequency,
                   help="linear schedule: epochs between pruning steps (default "
                        f"{PruningConfig.frequency})")
    p.add_argument("--finetune-epochs", type=int, default=None,
                   help="fine-tuning epochs after each pruning step (0: none; the best "
                        "validated epoch is kept, including none; default: chosen per model, "
                        "5, or 10 with attention layers)")
    p.add_argument("--lr", type=float, default=None,
                   help="fine-tuning learning rate (default: chosen per model: 0.005, 0.002 "
                        "with attention layers, halved above 1 M parameters)")
    p.add_argument("--distill-alpha", type=float, default=None,
                   help="weight of the unpruned model's soft targets in the fine-tune loss "
                        "(0: labels only; default: chosen per model, 0 today)")
    p.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch size")
    p.add_argument("--round-to", type=int, default=None,
                   help="keep channel counts a multiple of this (structured)")
    p.add_argument("--ignore", default="",
                   help="comma-separated layer names to leave untouched (structured always "
                        "keeps the classifier head)")
    p.add_argument("--attention", default="heads", choices=list(ATTENTION_MODES),
                   help="vit: remove whole heads or dimensions within heads")
    add_common(p, data=False)
    p.set_defaults(func=_cmd_prune)
    return p


def _cmd_prune(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.data import load_dataset
    from core.pruning._config import PruningConfig
    from core.pruning._verb import prune

    steps = args.steps if args.steps is not None else (3 if args.schedule == "gradual" else 1)
    cfg = PruningConfig(
        method=args.method, sparsity=args.sparsity, schedule=args.schedule, steps=steps,
        start_epoch=args.start_epoch, end_epoch=args.end_epoch, frequency=args.frequency,
        finetune_epochs=args.finetune_epochs, lr=args.lr, batch_size=args.batch_size,
        distill_alpha=args.distill_alpha,
        round_to=args.round_to, attention=args.attention, seed=args.seed,
        ignore=tuple(n.strip() for n in args.ignore.split(",") if n.strip()))
    data = load_dataset(args.data, label_column=args.label_column, seed=args.seed,
                        normalize=args.normalize) \
        if args.data else None
    result = prune(args.model, data, cfg, out_dir=args.out,
                   callbacks=progress_callbacks("prune"),
                   measure_options={"threads": args.threads})
    print_summary(result.report, args.out)
    return args.out
