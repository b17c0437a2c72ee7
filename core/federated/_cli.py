"""``studio scale``: the federated scalability experiment from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli import add_common, add_data, progress_callbacks


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from core.cli import config_default
    from core.federated._config import ALIASES, ENGINE_ALIASES, ENGINES, ScaleConfig
    from core.registry import list_methods

    p = subparsers.add_parser(
        "scale", help="federated simulation at several client counts (time, memory, accuracy)",
        description="Simulate federated training at each client count and report total time, "
                    "time per round, peak memory, accuracy, convergence round and bytes sent.")

    def opt(flag: str, help: str, **kw: Any) -> None:
        """An option whose default is ScaleConfig's field of the same name."""
        name = flag.lstrip("-").replace("-", "_")
        kw.setdefault("type", type(config_default(ScaleConfig, name)))
        p.add_argument(flag, default=config_default(ScaleConfig, name), help=help, **kw)

    p.add_argument("--client-counts",
                   default=",".join(map(str, config_default(ScaleConfig, "client_counts"))),
                   help="comma-separated client counts")
    opt("--rounds", "federated rounds per client count")
    opt("--samples-per-client", "training rows per client (synthetic data)")
    p.add_argument("--algorithm", default=config_default(ScaleConfig, "algorithm"),
                   choices=list_methods("federated") + list(ALIASES),
                   help="fedavg, fedprox (proximal term --mu) or reptile (meta-learning; "
                        "fedmeta is an alias)")
    p.add_argument("--model", default="mlp",
                   help="built-in family (mlp: 9→[32,16]→4 on synthetic data) or a run folder")
    add_data(p, default="synthetic",
             help="'synthetic' (seeded clients) or a built-in name/.csv/.npz to partition")
    p.add_argument("--alpha", type=float, default=None,
                   help="Dirichlet alpha over labels (non-IID); omit for IID")
    opt("--feature-shift", "per-client shift of the input features (0: none)")
    opt("--quantity-skew", "unevenness of the clients' sizes (0: equal)")
    opt("--stragglers", "fraction of the sampled clients that drop out each round")
    opt("--client-fraction", "fraction of the clients sampled each round")
    opt("--local-epochs", "local passes per round (fedavg, fedprox)")
    opt("--batch-size", "local batch size")
    opt("--lr", "local learning rate (fedavg, fedprox)")
    opt("--mu", "FedProx proximal weight")
    opt("--inner-lr", "Reptile inner (and adaptation) learning rate")
    opt("--inner-steps", "Reptile inner SGD steps")
    opt("--outer-lr", "Reptile outer step towards the clients' mean")
    opt("--adapt-steps", "local steps before the personalised accuracy is measured")
    opt("--input-dim", "features of the synthetic data")
    opt("--num-classes", "classes of the synthetic data")
    p.add_argument("--engine", default="builtin",
                   choices=sorted({*ENGINES, *ENGINE_ALIASES}),
                   help="builtin: all clients of a round at once (torch.func.vmap); loop: one "
                        "client at a time (the reference); flower: Flower's simulation")
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
