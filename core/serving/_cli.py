"""``studio serve-model RUN_DIR`` (an endpoint, optionally an A/B test) and ``studio agent``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a studio run folder (its model.onnx) or an .onnx "
                   "file; TorchScript/.pt2/pickles are never served")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    p.add_argument("--fd", type=int, default=None,
                   help="serve on this inherited listening socket instead (the studio's "
                        "Deploy tab; default: none)")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime intra-op threads per model (default 1)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="rows per request (default: STUDIO_SERVE_MAX_BATCH, else 256)")
    p.add_argument("--max-body-mb", type=float, default=None,
                   help="MB per request body (default: STUDIO_SERVE_MAX_BODY_MB, else 16)")
    p.add_argument("--ab-with", type=Path, default=None,
                   help="A/B test: a second run folder or .onnx (variant b; default: none)")
    p.add_argument("--share-b", type=float, default=0.5,
                   help="A/B: share of requests routed to variant b (default 0.5)")
    p.add_argument("--split", choices=("hash", "random"), default="hash",
                   help="A/B: route by a hash of the request id (deterministic) or a seeded "
                        "random draw (default hash)")
    p.add_argument("--seed", type=int, default=0, help="A/B: seed of the split (default 0)")
    p.add_argument("--min-samples", type=int, default=30,
                   help="A/B: requests (and labelled rows) per variant before a test is "
                        "reported (default 30)")


def _serve(args: argparse.Namespace) -> None:
    from core.serving import serve_model

    ab = {"share_b": args.share_b, "split": args.split, "seed": args.seed,
          "min_samples": args.min_samples}
    serve_model(args.run_dir, host=args.host, port=args.port, threads=args.threads,
                max_batch=args.max_batch, max_body_mb=args.max_body_mb,
                ab_with=args.ab_with, ab_options=ab if args.ab_with else None, fd=args.fd)


def _agent(args: argparse.Namespace) -> None:
    from core.errors import StudioError
    from core.serving import agent

    try:
        agent.run_agent(args.server, args.token, workdir=args.workdir, threads=args.threads,
                        name=args.name)
    except agent.AgentError as exc:
        raise StudioError(str(exc)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve-model", help="serve a variant's ONNX over HTTP (FastAPI + "
                              "ONNX Runtime), optionally as an A/B test against another")
    _add_serve_options(p)
    p.set_defaults(func=_serve)
    p = subparsers.add_parser("agent", help="measure this device: download the session's "
                              "variants from a studio, time them, send the figures back")
    p.add_argument("--server", required=True, help="the studio's URL, e.g. http://host:7860")
    p.add_argument("--token", required=True, help="a session token (POST /api/session, or "
                   "the Deploy tab's 'Connect a device')")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where downloaded models are kept (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads when timing (default: the studio's protocol, 1)")
    p.add_argument("--name", default=None, help="this device's name (default: host name)")
    p.set_defaults(func=_agent)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.serving._cli RUN_DIR ...``: serve-model alone (exit 2 on bad input)."""
    from core.errors import StudioError

    p = argparse.ArgumentParser(prog="studio serve-model")
    _add_serve_options(p)
    args = p.parse_args(argv)
    try:
        _serve(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
