"""``studio fuse`` and ``studio factorize``: rewrite a torch model, measured beside its input."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common, config_default
    from core.fusion._fuse import PATTERNS
    from core.fusion._verb import DEFAULT_PATTERNS
    from core.lowrank import LowRankConfig

    p = subparsers.add_parser(
        "fuse", help="fold BatchNorm into Conv/Linear and fuse ReLU/ReLU6 (torch model)",
        description="Operator fusion on a torch.fx graph; the outputs are checked and the "
                    "fused model is timed side by side with the input.")
    p.add_argument("--model", required=True, help="built-in run folder (or .pt/.pt2)")
    p.add_argument("--patterns", default=",".join(DEFAULT_PATTERNS),
                   help=f"comma-separated, of {', '.join(PATTERNS)}")
    add_common(p, data_default=None)
    p.set_defaults(func=_cmd_fuse)
    q = subparsers.add_parser(
        "factorize", help="low-rank (truncated SVD) factorization of Linear/Conv2d layers",
        description="Factorize layers at --rank-ratio, fine-tune, and measure beside the input.")
    q.add_argument("--model", required=True,
                   help="run folder, .onnx (converted to torch with onnx2torch) or .pt/.pt2")
    q.add_argument("--rank-ratio", type=float, default=config_default(LowRankConfig, "rank_ratio"),
                   help="kept rank as a fraction of each layer's full rank")
    q.add_argument("--layers", default="", help="comma-separated layer names (default: all)")
    q.add_argument("--finetune-epochs", type=int,
                   default=config_default(LowRankConfig, "finetune_epochs"),
                   help="fine-tuning epochs after factorizing (0: none; the best validated "
                        "state is kept)")
    q.add_argument("--lr", type=float, default=config_default(LowRankConfig, "lr"),
                   help="fine-tuning learning rate")
    add_common(q, data_default=None)
    q.set_defaults(func=_cmd_factorize)


def _data(args: argparse.Namespace) -> Any:
    if args.data is None:
        return None
    from core.data import load_dataset

    return load_dataset(args.data, label_column=args.label_column, seed=args.seed,
                        normalize=args.normalize)


def _cmd_fuse(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.fusion import FusionConfig, fuse

    cfg = FusionConfig(patterns=tuple(p.strip() for p in args.patterns.split(",") if p.strip()),
                       seed=args.seed)
    result = fuse(args.model, _data(args), cfg, out_dir=args.out, overwrite=args.overwrite,
                  callbacks=progress_callbacks("fuse"), measure_options={"threads": args.threads})
    print_summary(result.report, args.out)
    info = result.report["fusion"]
    print(f"fused {len(info['fused'])} op(s): graph nodes {info['nodes_before']} → "
          f"{info['nodes_after']}, max relative output difference "
          f"{info['max_rel_output_diff']:.2e}")
    return args.out


def _cmd_factorize(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.lowrank import LowRankConfig, factorize

    cfg = LowRankConfig(rank_ratio=args.rank_ratio, finetune_epochs=args.finetune_epochs,
                        lr=args.lr, seed=args.seed,
                        layers=tuple(n.strip() for n in args.layers.split(",") if n.strip()))
    result = factorize(args.model, _data(args), cfg, out_dir=args.out, overwrite=args.overwrite,
                       callbacks=progress_callbacks("factorize"),
                       measure_options={"threads": args.threads})
    print_summary(result.report, args.out)
    lr = result.report["lowrank"]
    print(f"factorized {len(lr['layers'])} layer(s): parameters {lr['params_before']:,} → "
          f"{lr['params_after']:,}")
    return args.out
