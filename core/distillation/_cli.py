"""``studio distill``: distil a teacher into a smaller student, next to a label-only twin."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common, add_data, config_default, data_help
    from core.distillation._config import BUDGETS, FAMILIES, DistillConfig
    from core.registry import list_methods

    p = subparsers.add_parser(
        "distill", help="train a smaller student from a teacher (and a label-only twin)",
        description="Distil a teacher into a student scaled by --width/--depth (or --student), "
                    "and train the same student on labels only; report both and the gain.")
    p.add_argument("--teacher", required=True, help="run folder, .onnx, .pt or .pt2")
    add_data(p, default=None, help=data_help() + " (default: the teacher run's data)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--student", default=None, help="a built-in run folder to train")
    who.add_argument("--width", type=float, default=config_default(DistillConfig, "width"),
                     help="student width as a fraction of the teacher's")
    p.add_argument("--depth", type=float, default=config_default(DistillConfig, "depth"),
                   help="fraction of the teacher's stages/blocks kept")
    p.add_argument("--family", default=None, choices=list(FAMILIES),
                   help="student family when the teacher is not a built-in model")
    p.add_argument("--method", default=config_default(DistillConfig, "method"),
                   choices=list_methods("distillation"),
                   help="distillation loss (see `studio methods distill`)")
    p.add_argument("--temperature", type=float,
                   default=config_default(DistillConfig, "temperature"),
                   help="softmax temperature of the soft targets")
    p.add_argument("--alpha", type=float, default=config_default(DistillConfig, "alpha"),
                   help="weight of the teacher's soft targets (1 - alpha: the labels)")
    p.add_argument("--beta", type=float, default=None,
                   help="weight of the method's extra term (feature/attention/relational)")
    p.add_argument("--layer", default=None, help="layer to match (feature/relational)")
    p.add_argument("--teachers", default="",
                   help="comma-separated extra teachers for multi-teacher (run folders/files)")
    p.add_argument("--epochs", type=int, default=config_default(DistillConfig, "epochs"),
                   help="training epochs of the distilled student")
    p.add_argument("--budget", default=config_default(DistillConfig, "budget"),
                   choices=list(BUDGETS),
                   help="label-only student: as many optimiser steps as the distilled one "
                        "(default), or the same epochs")
    p.add_argument("--lr", type=float, default=config_default(DistillConfig, "lr"),
                   help="learning rate of both students")
    p.add_argument("--batch-size", type=int, default=config_default(DistillConfig, "batch_size"),
                   help="training batch size")
    p.add_argument("--label-fraction", type=float, default=1.0,
                   help="fraction of train labels kept; the rest are unlabelled inputs")
    p.add_argument("--unlabelled", default=None, metavar="FILE",
                   help="extra unlabelled inputs: .npz (array X) or .csv")
    add_common(p, data=False)
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.data import load_dataset
    from core.distillation import DistillConfig, distill

    cfg = DistillConfig(
        method=args.method, temperature=args.temperature, alpha=args.alpha, beta=args.beta,
        width=args.width, depth=args.depth, family=args.family, student=args.student,
        teachers=tuple(t.strip() for t in args.teachers.split(",") if t.strip()),
        layer=args.layer, label_fraction=args.label_fraction, unlabelled=args.unlabelled,
        epochs=args.epochs, budget=args.budget, lr=args.lr, batch_size=args.batch_size,
        seed=args.seed)
    data = args.data
    teacher = Path(args.teacher)
    if data is not None and (not teacher.is_dir() or args.label_column != "label"
                             or args.normalize):
        data = load_dataset(data, label_column=args.label_column, normalize=args.normalize)
    result = distill(teacher, data, cfg, out_dir=args.out,
                     callbacks=progress_callbacks("distill"),
                     measure_options={"threads": args.threads})
    print_summary(result.report, args.out)
    kd = result.report["distillation"]
    print(f"teacher {result.report['baseline']['accuracy']:.4f}, distilled student "
          f"{kd['kd_student']['accuracy']:.4f}, label-only student "
          f"{kd['label_only']['accuracy']:.4f}, gain {kd['gain_pt']:+.2f} pt")
    return args.out
