"""``studio compare DIR [DIR ...] --out DIR``: re-measure run folders side by side."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from core.cli import add_common

    p = subparsers.add_parser(
        "compare", help="re-measure run folders side by side and export a report",
        description="Re-measure every run folder under one protocol in one run (latency "
                    "interleaved), compute the Pareto front, and write report.json, "
                    "report.html (self-contained, offline), report.md and comparison.csv.")
    p.add_argument("runs", nargs="+", type=Path, help="run folders (the first is the baseline)")
    p.add_argument("--baseline", default=None, help="run id to take deltas against")
    p.add_argument("--budget", type=float, default=0.4, help="timing seconds per variant/batch")
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    p.add_argument("--device", type=Path, default=None,
                   help="a device record .json (GET /api/devices, one entry): also rank the "
                        "variants by the latency measured on that device (default: none)")
    add_common(p, data=False)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> Path:
    from core.cli import progress_callbacks
    from core.compare import compare

    result = compare(args.runs, out_dir=args.out, baseline=args.baseline,
                     callbacks=progress_callbacks("compare"),
                     measure_options={"threads": args.threads, "budget_s": args.budget,
                                      "memory": not args.no_memory}, device=args.device)
    print_table(result.report)
    if result.report.get("device"):
        from core.serving import ranking_markdown

        print(ranking_markdown(result.report["device"]))
    print(f"report: {args.out / 'report.json'} (also report.html, report.md, comparison.csv)")
    return args.out


def print_table(report: dict[str, Any]) -> None:
    from core.measure import speed_verdict

    for r in report["rows"]:
        sizes = sorted((int(k[5:]) for k in r if k.startswith("p50_b") and k[5:].isdigit()
                        and r[k] is not None))  # a fixed-batch model: its batch size only
        p50s = "  ".join(f"p50 b{b} {r[f'p50_b{b}']:.3f} ms" for b in sizes)
        speed = "  ".join(f"speed-up b{b} {s:.2f}× ({speed_verdict(s)})" for b in sizes
                          if not r.get("baseline") and (s := r.get(f"speedup_b{b}")))
        print(f"{'*' if r['pareto'] else ' '} {r['variant']:<40} acc {r['accuracy']:.4f}  "
              f"{r['size_bytes'] / 1024:9.1f} KB  {p50s}  {speed}".rstrip())
    for w in report.get("warnings", []):
        print(f"warning: {w}")
