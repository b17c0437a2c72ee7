"""``studio auto --model M --data D --target T --tolerance 0.01 --out DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.auto._candidates import CANDIDATE_NAMES
    from core.auto._config import TARGETS, AutoConfig
    from core.cli import add_common, config_default, data_help

    p = subparsers.add_parser(
        "auto", help="find the best variant for a target on this hardware",
        description="Propose candidate recipes for this CPU/GPU, run them, re-measure them "
                    "side by side, pick the best on the Pareto front within the accuracy "
                    "tolerance, and explain why it won and why the others lost.")
    p.add_argument("--model", default="cnn",
                   help="a built-in family (trained first), a run folder or a model file")
    p.add_argument("--target", choices=TARGETS, default=config_default(AutoConfig, "target"),
                   help="what the pick optimises: latency, file size, accuracy, or a balance")
    p.add_argument("--tolerance", type=float, default=config_default(AutoConfig, "tolerance"),
                   help="largest validation-accuracy drop allowed (0.01 = 1 point)")
    p.add_argument("--finetune-epochs", type=int,
                   default=config_default(AutoConfig, "finetune_epochs"),
                   help="fine-tuning epochs after pruning (pruned candidates; default: "
                   "chosen per model, e.g. 5 for a CNN, 10 for a ViT)")
    p.add_argument("--train-epochs", type=int, default=config_default(AutoConfig, "train_epochs"),
                   help="epochs to train the baseline when --model is a family")
    p.add_argument("--candidates", default="",
                   help=f"comma-separated subset of {', '.join(CANDIDATE_NAMES)} (default: "
                        "every candidate that suits this hardware)")
    p.add_argument("--refine", type=int, default=config_default(AutoConfig, "refine"),
                   help="rounds of sparsity search around the tolerance (0 = none)")
    p.add_argument("--budget", type=float, default=0.4, help="timing seconds per variant/batch")
    add_common(p, data_default=None, data_text=(
        f"{data_help()} (default: a run folder's own data; digits for a built-in family; a "
        "model file needs --data)"))
    p.set_defaults(func=_cmd_auto)


def _cmd_auto(args: argparse.Namespace) -> Path:
    from core.auto import AutoConfig, auto
    from core.cli import print_summary, progress_callbacks
    from core.data import load_dataset

    cfg = AutoConfig(target=args.target, tolerance=args.tolerance,
                     finetune_epochs=args.finetune_epochs, train_epochs=args.train_epochs,
                     candidates=tuple(c.strip() for c in args.candidates.split(",")
                                      if c.strip()), refine=args.refine, seed=args.seed)
    model = args.model
    data = None  # a run folder: its own data; a model file without --data is refused
    if args.data is not None or not Path(model).is_dir():
        data = load_dataset(args.data or "digits", label_column=args.label_column,
                            seed=args.seed, normalize=args.normalize)
    result = auto(model, data, cfg, out_dir=args.out, callbacks=progress_callbacks("auto"),
                  measure_options={"threads": args.threads, "budget_s": args.budget})
    info = result.report["auto"]
    print(info["explanation"])
    for loser in info["losers"]:
        print(f"- {loser['name']}: {loser['why_lost']}")
    print_summary(result.report, args.out)
    print(f"comparison: {args.out / 'comparison' / 'report.html'}")
    return args.out
