"""``studio scale``: the federated scalability experiment from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import add_common, add_normalize, progress_callbacks


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from core.registry import list_methods

    p = subparsers.add_parser(
        "scale", help="federated simulation at several client counts (time, memory, accuracy)")
    p.add_argument("--client-counts", default="4,10,25,50,100",
                   help="comma-separated client counts")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--samples-per-client", type=int, default=35)
    p.add_argument("--algorithm", default="fedavg",
                   choices=list_methods("federated") + ["fedmeta"])
    p.add_argument("--model", default="mlp",
                   help="built-in family (mlp: 9→[32,16]→4 on synthetic data) or a run folder")
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (seeded clients) or a built-in name/.csv/.npz to partition")
    p.add_argument("--label-column", default="label")
    add_normalize(p)
    p.add_argument("--alpha", type=float, default=None,
                   help="Dirichlet alpha over labels (non-IID); omit for IID")
    p.add_argument("--feature-shift", type=float, default=0.0)
    p.add_argument("--quantity-skew", type=float, default=0.0)
    p.add_argument("--stragglers", type=float, default=0.0, help="fraction that drops out")
    p.add_argument("--client-fraction", type=float, default=1.0)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--mu", type=float, default=0.01)
    p.add_argument("--inner-lr", type=float, default=0.05)
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--outer-lr", type=float, default=1.0)
    p.add_argument("--adapt-steps", type=int, default=5)
    p.add_argument("--input-dim", type=int, default=9)
    p.add_argument("--num-classes", type=int, default=4)
    p.add_argument("--engine", default="builtin", choices=["builtin", "loop", "flower"])
    add_common(p, data=False)
    p.set_defaults(func=_cmd_scale)


def _counts(text: str) -> tuple[int, ...]:
    from core.errors import InvalidParameterError

    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise InvalidParameterError("client-counts", "comma-separated integers", text) from None


def _cmd_scale(args: argparse.Namespace) -> Path:
    from core.federated import ScaleConfig, scale

    cfg = ScaleConfig(
        client_counts=_counts(args.client_counts), rounds=args.rounds,
        samples_per_client=args.samples_per_client, algorithm=args.algorithm,
        local_epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr, mu=args.mu,
        inner_lr=args.inner_lr, inner_steps=args.inner_steps, outer_lr=args.outer_lr,
        adapt_steps=args.adapt_steps, client_fraction=args.client_fraction,
        stragglers=args.stragglers, alpha=args.alpha, feature_shift=args.feature_shift,
        quantity_skew=args.quantity_skew, input_dim=args.input_dim,
        num_classes=args.num_classes, engine=args.engine, seed=args.seed)
    data = args.data
    if data != "synthetic":
        from core.data import load_dataset

        data = load_dataset(data, label_column=args.label_column, seed=args.seed,
                            normalize=args.normalize)
    result = scale(args.model, data, cfg, out_dir=args.out,
                   callbacks=progress_callbacks("scale"),
                   measure_options={"threads": args.threads})
    rows = result.report["scalability"]["results"]
    print(f"{'clients':>8} {'total s':>8} {'s/round':>9} {'peak MB':>8} {'accuracy':>8} "
          f"{'conv.':>5} {'bytes/round':>12}")
    for r in rows:
        print(f"{r['clients']:>8} {r['total_s']:>8.2f} {r['time_per_round_s']:>9.4f} "
              f"{r['peak_memory_mb']:>8.1f} {r['final_accuracy']:>8.3f} "
              f"{r['convergence_round']:>5} {r['bytes_per_round']:>12,}")
    for w in result.report.get("warnings", []):
        print(f"warning: {w}")
    print(f"report: {args.out / 'report.json'}")
    return args.out
