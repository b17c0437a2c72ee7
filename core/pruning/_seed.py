"""``prune_model`` as the seeds call it, and as the studio does; both forward to the verb.

Seed forms: ``prune_model(model, amount=0.3)`` and ``prune_model(model=m,
target_sparsity=0.5, method='channel', gradual=True, train_fn=fine_tune)``
(``result['pruned_model']``). Studio form: ``prune_model(model, data, method=..., sparsity=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from core.callbacks import Callbacks
from core.errors import InvalidParameterError

__all__ = ["SEED_METHODS", "prune_model", "seed_pruning_options"]

# The seeds' method names → the studio's.
SEED_METHODS = {"l1_unstructured": "l1-unstructured", "magnitude": "l1-unstructured",
                "unstructured": "l1-unstructured", "channel": "structured-l2",
                "structured": "structured-l2", "l1_norm": "structured-l1",
                "l2_norm": "structured-l2", "importance": "structured-taylor",
                "gradient": "taylor-unstructured", "random": "random-unstructured",
                "global_magnitude": "global-magnitude", "movement": "movement"}


def seed_pruning_options(method: str, *, amount: float | None, target_sparsity: float | None,
                         sparsity: float | None, gradual: bool | None,
                         options: Mapping[str, Any]) -> dict[str, Any]:
    """PruningConfig values from the seeds' names (amount/target_sparsity, gradual)."""
    given = [v for v in (amount, target_sparsity, sparsity) if v is not None]
    if len(given) > 1:
        raise InvalidParameterError("sparsity", "given once (amount, target_sparsity or "
                                    "sparsity)", given)
    values: dict[str, Any] = {"method": SEED_METHODS.get(method, method),
                              "sparsity": given[0] if given else 0.5, **options}
    if amount is not None:  # the seeds' magnitude prune does not fine-tune
        values.setdefault("finetune_epochs", 0)
    if gradual:
        values.setdefault("schedule", "gradual")
        values.setdefault("steps", 3)
    return values


def prune_model(model: Any, data: Any = None, method: str = "structured-l2",
                sparsity: float | None = None, *, amount: float | None = None,
                target_sparsity: float | None = None, gradual: bool | None = None,
                train_fn: Callable[[Any], Any] | None = None, train_loader: Any = None,
                test_loader: Any = None, out_dir: str | Path | None = None,
                callbacks: Callbacks | None = None,
                measure_options: Mapping[str, Any] | None = None, **config: Any) -> Any:
    """Prune and measure; returns a RunResult that also answers ``['pruned_model']``.

    ``train_fn(model)`` (the seeds' fine-tune function) runs on the pruned model that
    ``result['pruned_model']`` returns; the run folder's figures are measured before it.
    """
    from core.pruning._config import PruningConfig
    from core.pruning._verb import prune_model as studio_prune_model
    from core.seed_compat import SeedRunResult, resolve_data

    values = seed_pruning_options(method, amount=amount, target_sparsity=target_sparsity,
                                  sparsity=sparsity, gradual=gradual, options=config)
    cfg = PruningConfig.from_dict(values)
    data = resolve_data(model, data, train_loader=train_loader, test_loader=test_loader)
    result = studio_prune_model(model, data, out_dir=out_dir, callbacks=callbacks,
                                measure_options=measure_options, **cfg.to_dict())
    seed = SeedRunResult.of(result, "pruned_model")
    if train_fn is None:
        return seed
    model = seed.model()
    out = train_fn(model)
    return SeedRunResult(result.run_dir, result.report, "pruned_model",
                         ("train_fn ran on the pruned model after the run was measured",),
                         out if hasattr(out, "parameters") else model)
