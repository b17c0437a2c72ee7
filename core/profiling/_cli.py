"""``studio profile``: where a model's forward time goes, layer by layer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common

    p = subparsers.add_parser(
        "profile", help="per-layer time, share, params, FLOPs and memory; the bottlenecks",
        description="Profile one forward pass layer by layer (torch forward hooks, or ONNX "
                    "Runtime's per-node profiling) and write DIR/report.json.")
    p.add_argument("--model", required=True, help="run folder, .onnx, .pt or .pt2")
    p.add_argument("--batch-size", type=int, default=1, help="rows in the profiled batch")
    p.add_argument("--runs", type=int, default=50, help="profiled forwards (after warm-up)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="share of the time above which a layer is a bottleneck")
    add_common(p, data_default=None)
    p.set_defaults(func=_cmd_profile)


def _cmd_profile(args: argparse.Namespace) -> Path:
    from core.profiling._profile import profile, write_profile

    data = args.data
    if data is not None:
        from core.data import load_dataset

        data = load_dataset(data, label_column=args.label_column, seed=args.seed,
                            normalize=args.normalize)
    prof = profile(args.model, data, batch_size=args.batch_size, runs=args.runs,
                   threads=args.threads)
    write_profile(prof, args.out, threshold=args.threshold, model_name=Path(args.model).name,
                  overwrite=args.overwrite)
    print(prof.table())
    names = ", ".join(lay.name for lay in prof.find_bottlenecks(args.threshold)) or "none"
    print(f"bottlenecks (≥ {100 * args.threshold:.0f} % of the time): {names}")
    return args.out
