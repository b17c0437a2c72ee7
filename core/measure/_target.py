"""The deployment target: batch sizes, thread counts and a latency budget, given once.

Every measurement, Auto and the comparison ranking read the same target from the measure
options (``{"batch_sizes": (1, 64), "threads": 1, "latency_budget_ms": None, ...}``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from core.errors import InvalidParameterError, check_range

__all__ = ["TARGET_KEYS", "Target", "active_target", "parse_batch_sizes", "parse_threads",
           "resolve_target", "resolve_threads", "using_target"]

TARGET_KEYS = ("batch_sizes", "threads", "latency_budget_ms")
MAX_BATCH = 4096


def _cores() -> int:
    return os.cpu_count() or 1


def resolve_threads(value: int | str) -> int:
    """A thread count: an integer >= 1, or ``"all"`` for every core of this machine."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return _cores()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    check_range("threads", value, low=1, high=1024, kind=int)
    return int(value)


def _thread_spec(value: Any) -> tuple[int | str, ...]:
    """``1``, ``"all"``, ``"1,all"`` or ``(1, "all")`` as a tuple of ints and ``"all"``."""
    items = value.split(",") if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple)) else [value])
    out: list[int | str] = []
    for item in items:
        text = item.strip().lower() if isinstance(item, str) else item
        if text == "all":
            out.append("all")
            continue
        try:
            n = resolve_threads(text)
        except InvalidParameterError:
            raise InvalidParameterError("threads", "a positive integer, 'all' (every core) or "
                                        "a comma-separated list of them, e.g. 1,all",
                                        value) from None
        out.append(n)
    if not out:
        raise InvalidParameterError("threads", "at least one thread count", value)
    return tuple(out)


def _batch_spec(value: Any) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple)) else [value])
    out: list[int] = []
    for item in items:
        text = item.strip() if isinstance(item, str) else item
        if isinstance(text, str) and text.isdigit():
            text = int(text)
        if not isinstance(text, int) or isinstance(text, bool) or not 1 <= text <= MAX_BATCH:
            raise InvalidParameterError(
                "batch_sizes", f"positive integers up to {MAX_BATCH}, e.g. 1,64", value)
        if text not in out:
            out.append(text)
    if not out:
        raise InvalidParameterError("batch_sizes", "at least one batch size, e.g. 1,64", value)
    return tuple(out)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,64"`` → ``(1, 64)`` (CLI and UI text)."""
    return _batch_spec(text)


def parse_threads(text: str) -> tuple[int | str, ...] | int | str:
    """``"1"`` → ``1``, ``"all"`` → ``"all"``, ``"1,all"`` → ``(1, "all")``."""
    spec = _thread_spec(text)
    return spec[0] if len(spec) == 1 else spec


@dataclass(frozen=True)
class Target:
    """Where the model will run: batch sizes, thread count(s) and a latency budget.

    ``threads`` is a count, ``"all"`` (every core of this machine) or several of them
    (e.g. ``(1, "all")``: the first is the one every ranking uses, the others are reported
    beside it). ``latency_budget_ms`` is the largest p50 latency allowed at each target
    batch size (None: no budget).
    """

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: Any = 1
    latency_budget_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", _batch_spec(self.batch_sizes))
        spec = _thread_spec(self.threads)
        object.__setattr__(self, "threads", spec[0] if len(spec) == 1 else spec)
        if self.latency_budget_ms is not None:
            check_range("latency_budget_ms", self.latency_budget_ms, low=0,
                        low_inclusive=False)

    @property
    def thread_counts(self) -> tuple[int, ...]:
        """Resolved thread counts, the ranking one first, without repeats."""
        out: list[int] = []
        for t in _thread_spec(self.threads):
            n = _cores() if t == "all" else int(t)
            if n not in out:
                out.append(n)
        return tuple(out)

    @property
    def primary_batch(self) -> int:
        """The batch size a single pick is ranked at: the largest target batch size."""
        return max(self.batch_sizes)

    def within_budget(self, p50_ms: float | None) -> bool:
        return self.latency_budget_ms is None or (p50_ms is not None
                                                  and p50_ms <= self.latency_budget_ms)

    def to_dict(self) -> dict[str, Any]:
        threads = list(self.threads) if isinstance(self.threads, tuple) else self.threads
        return {"batch_sizes": list(self.batch_sizes), "threads": threads,
                "thread_counts": list(self.thread_counts),
                "latency_budget_ms": self.latency_budget_ms}

    def options(self) -> dict[str, Any]:
        """The measure options this target stands for (``measure_many`` keywords)."""
        return {"batch_sizes": self.batch_sizes, "threads": self.threads,
                "latency_budget_ms": self.latency_budget_ms}

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> "Target":
        """The target in a measure-options mapping (defaults where a key is missing)."""
        opts = dict(options or {})
        return cls(**{k: opts[k] for k in TARGET_KEYS if opts.get(k) is not None})

    @classmethod
    def coerce(cls, value: "Target | Mapping[str, Any] | None") -> "Target":
        if isinstance(value, Target):
            return value
        if value is None or isinstance(value, Mapping):
            return cls.from_options(value)
        raise InvalidParameterError("target", "a Target or a mapping of its fields",
                                    type(value).__name__)


def split_options(options: Mapping[str, Any] | None) -> tuple[Target, dict[str, Any]]:
    """(the target, the other measure options) from one measure-options mapping."""
    opts = dict(options or {})
    target = Target.from_options(opts)
    rest = {k: v for k, v in opts.items() if k not in TARGET_KEYS}
    return target, rest


def sizes_with(target: Target, extra: Sequence[int] = ()) -> tuple[int, ...]:
    """The target's batch sizes plus any a fixed-batch model needs, sorted."""
    return tuple(sorted(set(target.batch_sizes) | set(extra)))


def with_threads(model: Any, threads: int) -> Any:
    """The model set to run on ``threads`` threads: an ONNX Runtime session whose thread
    count is fixed at creation is opened again from its file; others are returned as given
    (torch threads are set around each call by the Predictor)."""
    if type(model).__name__ != "InferenceSession" or not hasattr(model, "get_session_options"):
        return model
    if model.get_session_options().intra_op_num_threads == threads:
        return model
    path = getattr(model, "_model_path", None)
    if not path:
        return model
    from core.measure._predictor import ort_session

    return ort_session(path, threads=threads,
                       output_name=getattr(model, "studio_output_name", None))


def time_at_other_threads(models: Mapping[str, Any], X: Any, target: Target, *,
                          sizes: Sequence[int], budget_s: float, check: Any = None,
                          stable_within: float | None = None) -> dict[str, dict[str, Any]]:
    """Latency of every variant at the target's other thread counts (interleaved, like the
    first): ``{name: {"<threads>": {"<batch>": {p50, p95, runs}}}}``."""
    from core.measure._latency import interleaved_latency
    from core.measure._predictor import as_predictor

    out: dict[str, dict[str, Any]] = {name: {} for name in models}
    for n in target.thread_counts[1:]:
        preds = {name: as_predictor(with_threads(m, n), threads=n) for name, m in models.items()}
        lat = interleaved_latency(preds, X, batch_sizes=tuple(sizes), budget_s=budget_s,
                                  check=check, stable_within=stable_within)
        for name in models:
            out[name][str(n)] = lat[name]
    return out


_ACTIVE: contextvars.ContextVar[Target | None] = contextvars.ContextVar("studio_target",
                                                                        default=None)


@contextlib.contextmanager
def using_target(target: Target | Mapping[str, Any] | None) -> Iterator[Target]:
    """Make ``target`` the default of every measurement inside (the CLI sets it once from
    ``--batch-sizes/--threads/--latency-budget-ms``); explicit options still win."""
    resolved = Target.coerce(target)
    token = _ACTIVE.set(resolved)
    try:
        yield resolved
    finally:
        _ACTIVE.reset(token)


def active_target() -> Target | None:
    return _ACTIVE.get()


def resolve_target(*, batch_sizes: Any = None, threads: Any = None,
                   latency_budget_ms: float | None = None) -> Target:
    """The target of one measurement: explicit values, else the active target's, else the
    defaults. A thread count equal to the active target's first keeps the target's spec
    (``"all"``, or its other counts)."""
    base = active_target() or Target()
    if threads is not None and not (isinstance(threads, int)
                                    and threads == base.thread_counts[0]):
        base = Target(batch_sizes=base.batch_sizes, threads=threads,
                      latency_budget_ms=base.latency_budget_ms)
    return Target(batch_sizes=batch_sizes if batch_sizes is not None else base.batch_sizes,
                  threads=base.threads,
                  latency_budget_ms=latency_budget_ms if latency_budget_ms is not None
                  else base.latency_budget_ms)


def add_target_options(p: Any) -> None:
    """``--batch-sizes``, ``--threads`` and ``--latency-budget-ms`` on a CLI verb."""
    p.add_argument("--batch-sizes", type=_cli(parse_batch_sizes), default=(1, 64),
                   metavar="B[,B...]",
                   help="batch sizes the model is deployed at; every latency is measured and "
                        "every pick ranked at them (default: 1,64)")
    p.add_argument("--threads", type=_cli(parse_threads), default=1, metavar="N|all[,...]",
                   help="threads used when timing: a count, 'all' (every core) or both, e.g. "
                        "1,all (the first is ranked; default: 1)")
    p.add_argument("--latency-budget-ms", type=float, default=None, metavar="MS",
                   help="largest p50 latency allowed at each target batch size; Auto picks "
                        "within it (default: none)")


def _cli(parse: Any) -> Any:
    """An argparse ``type`` that turns the studio's error into argparse's one-line message."""
    import argparse

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InvalidParameterError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def target_from_args(args: Any) -> Target | None:
    """The deployment target of parsed CLI arguments (None for a verb without the options);
    ``args.threads`` becomes the ranked thread count (an int, as verbs expect)."""
    if not hasattr(args, "batch_sizes"):
        return None
    target = Target(batch_sizes=args.batch_sizes, threads=args.threads,
                    latency_budget_ms=getattr(args, "latency_budget_ms", None))
    args.threads = target.thread_counts[0]
    return target
