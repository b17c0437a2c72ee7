"""``studio continual``: learn a task sequence with replay, optimizing after each task."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common
    from core.continual._config import FAMILIES, PRUNE_METHODS, SEQUENCES
    from core.registry import list_methods

    p = subparsers.add_parser(
        "continual", help="learn tasks in sequence (replay; prune/quantize after each task)",
        description="Learn a task sequence one task after another with an experience-replay "
                    "buffer, optionally pruning and/or quantizing after each task; report the "
                    "accuracy matrix, average accuracy, forgetting, backward transfer and "
                    "each task's artifact size and latency (measured side by side).")
    p.add_argument("--sequence", default=None, choices=list(SEQUENCES),
                   help="task sequence (default: split-digits; 'files' with --files, "
                        "'label-columns' with --label-columns)")
    p.add_argument("--n-tasks", type=int, default=5,
                   help="tasks of a built-in digits sequence, 2-10 (default 5)")
    p.add_argument("--data", default=None,
                   help="the .csv of a 'label-columns' sequence (default: none)")
    p.add_argument("--label-columns", default="",
                   help="comma-separated label columns of --data, one task each (default: none)")
    p.add_argument("--files", default="",
                   help="comma-separated .csv/.npz files, one task each (default: none)")
    p.add_argument("--label-column", default="label",
                   help="label column of each --files .csv (default: label)")
    p.add_argument("--normalize", action="store_true",
                   help="standardize user data with the train split's mean and std (default: "
                        "as given)")
    p.add_argument("--model", default="cnn",
                   help=f"a built-in family {list(FAMILIES)} or a built-in run folder "
                        "(default: cnn)")
    p.add_argument("--replay-size", type=int, default=200,
                   help="rows kept in the replay buffer, 0 = no replay (default 200)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per task (default 5)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"],
                   help="optimiser (default adam)")
    p.add_argument("--prune", default=None, choices=list(PRUNE_METHODS),
                   help="prune after each task with this method (default: no pruning)")
    p.add_argument("--sparsity", type=float, default=0.5,
                   help="sparsity reached at the last task, growing on a cubic schedule "
                        "(default 0.5)")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="fine-tune epochs after each pruning step (default 1)")
    p.add_argument("--quantize", default=None, choices=list_methods("quantization"),
                   help="quantize a copy after each task with this method (default: none)")
    add_common(p, data=False)
    p.set_defaults(func=_cmd_continual)


def _split(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in str(text or "").split(",") if v.strip())


def _cmd_continual(args: argparse.Namespace) -> Path:
    from core.cli import print_summary, progress_callbacks
    from core.continual import ContinualConfig, continual
    from core.continual._config import FAMILIES

    files, columns = _split(args.files), _split(args.label_columns)
    sequence = args.sequence or ("files" if files else "label-columns" if columns
                                 else "split-digits")
    family = args.model if args.model in FAMILIES else "cnn"
    cfg = ContinualConfig(
        sequence=sequence, n_tasks=args.n_tasks, data=args.data, label_columns=columns,
        files=files, label_column=args.label_column, normalize=args.normalize, model=family,
        replay_size=args.replay_size, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, optimizer=args.optimizer, prune=args.prune,
        sparsity=args.sparsity, finetune_epochs=args.finetune_epochs, quantize=args.quantize,
        seed=args.seed)
    model = None if args.model in FAMILIES else Path(args.model)
    result = continual(model, None, cfg, out_dir=args.out,
                       callbacks=progress_callbacks("continual"),
                       measure_options={"threads": args.threads})
    print_summary(result.report, args.out)
    c = result.report["continual"]
    fgt, bwt = c["forgetting"], c["backward_transfer"]
    print(f"average accuracy {c['average_accuracy']:.4f}, forgetting {fgt:.4f}, backward "
          f"transfer {bwt:+.4f} over {len(c['tasks'])} tasks")
    for row in c["tasks"]:
        lat = row["latency_ms"].get("1", {}).get("p50")
        print(f"  after task {row['task']}: average accuracy {row['average_accuracy']:.4f}, "
              f"size {row['size_bytes']:,} B, p50 b1 {lat:.3f} ms")
    return args.out
