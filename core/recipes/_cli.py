"""``studio run RECIPE.yaml --out DIR``: run a recipe's steps with parity checks between them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common, add_data

    p = subparsers.add_parser(
        "run", help="run a recipe (ordered steps) from a YAML file",
        description="Run train/prune/finetune/distill/quantize/export steps in order; between "
                    "steps ONNX Runtime and torch outputs are compared and the run stops if "
                    "they diverge.")
    p.add_argument("recipe", type=Path, help="RECIPE.yaml")
    add_data(p, default=None, help="override the recipe's data set")
    p.add_argument("--budget", type=float, default=0.4, help="timing seconds per variant/batch")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    add_common(p, data=False)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.data import load_dataset
    from core.recipes import Recipe, run_recipe

    recipe = Recipe.load(args.recipe)
    data = load_dataset(args.data or recipe.data, label_column=args.label_column,
                        seed=args.seed, normalize=args.normalize)
    result = run_recipe(recipe, out_dir=args.out, data=data,
                        callbacks=progress_callbacks(f"run {recipe.name}"),
                        measure_options={"threads": args.threads, "budget_s": args.budget,
                                         "memory": not args.no_memory})
    for s in result.report["recipe"]["steps"]:
        par = s["parity"]
        fig = (f"max |Δ| {par['max_abs_diff']:.2e}" if "max_abs_diff" in par else "")
        print(f"step {s['run_id']}: parity {par['kind']} ok {fig}")
    print_summary(result.report, args.out)
    return args.out
