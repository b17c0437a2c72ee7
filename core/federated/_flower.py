"""The same experiment on Flower's simulation engine (optional extra ``flwr[simulation]``)."""

from __future__ import annotations

from typing import Any, Callable

from core.callbacks import Callbacks
from core.errors import StudioError
from core.federated._clients import ClientSet
from core.federated._config import ScaleConfig

INSTALL = ('The Flower engine needs the optional extra: pip install "flwr[simulation]" '
           '(or pip install -e ".[flower]"). Use --engine builtin otherwise.')


class MissingExtraError(StudioError):
    """An optional dependency is not installed."""


def _import_flwr() -> Any:
    try:
        import flwr  # noqa: F401
        from flwr.simulation import run_simulation  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"{INSTALL} ({exc})") from None
    import flwr

    return flwr


def run_flower(model: Any, clients: ClientSet, config: ScaleConfig, *,
               model_bytes: int | None = None, callbacks: Callbacks | None = None,
               progress: Callable[[int, dict[str, Any]], None] | None = None) -> Any:
    """Run the experiment through ``flwr.simulation`` (same partitions, model, algorithm)."""
    _import_flwr()
    raise MissingExtraError("The Flower engine is not implemented yet.")
