"""``studio distill``: distil a teacher into a smaller student, next to a label-only twin."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common, add_normalize
    from core.registry import list_methods

    p = subparsers.add_parser(
        "distill", help="train a smaller student from a teacher (and a label-only twin)",
        description="Distil a teacher into a student scaled by --width/--depth (or --student), "
                    "and train the same student on labels only; report both and the gain.")
    p.add_argument("--teacher", required=True, help="run folder, .onnx, .pt or .pt2")
    p.add_argument("--data", default=None,
                   help="built-in name, .csv or .npz (default: the teacher run's data)")
    p.add_argument("--label-column", default="label")
    add_normalize(p)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--student", default=None, help="a built-in run folder to train")
    who.add_argument("--width", type=float, default=0.5,
                     help="student width as a fraction of the teacher's (default 0.5)")
    p.add_argument("--depth", type=float, default=1.0,
                   help="fraction of the teacher's stages/blocks kept (default 1.0)")
    p.add_argument("--family", default=None, choices=["mlp", "cnn", "vit"],
                   help="student family when the teacher is not a built-in model")
    p.add_argument("--method", default="soft-target", choices=list_methods("distillation"))
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--beta", type=float, default=None,
                   help="weight of the method's extra term (feature/attention/relational)")
    p.add_argument("--layer", default=None, help="layer to match (feature/relational)")
    p.add_argument("--teachers", default="",
                   help="comma-separated extra teachers for multi-teacher (run folders/files)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--budget", default="steps", choices=["steps", "epochs"],
                   help="label-only student: as many optimiser steps as the distilled one "
                        "(default), or the same epochs")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64)
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
