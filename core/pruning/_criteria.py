"""Pruning criteria as importance objects: one small class per registered method.

A structured criterion hands Torch-Pruning one of its own ``tp.importance`` objects (it
ranks whole channels/neurons/heads through the dependency graph); an unstructured one
scores every weight of each layer (``torch.nn.utils.prune`` then keeps the top ones).
A new criterion is one class with ``@criterion``: it registers the method (name, summary,
the shared pruning loop) in ``core.registry`` with itself as the method's ``spec``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from core.errors import InvalidParameterError, UnsupportedModelError
from core.registry import get_method, register_method

if TYPE_CHECKING:  # torch is imported where a criterion runs: the server lists them without
    import torch
    from torch import nn

AREA = "pruning"


def tp_module() -> Any:
    """Torch-Pruning, or a clear error naming the package."""
    try:
        import torch_pruning as tp
    except ImportError:  # pragma: no cover - a declared dependency
        raise UnsupportedModelError("Structured pruning needs Torch-Pruning: "
                                    "pip install torch-pruning") from None
    return tp


class Criterion(ABC):
    """What a pruning method ranks by. ``structured``: remove whole channels (Torch-Pruning);
    else zero single weights. ``needs_gradients``: loss gradients are gathered before each
    step. ``scores_while_training``: scores come from the fine-tune (movement)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    structured: ClassVar[bool]
    needs_gradients: ClassVar[bool] = False
    scores_while_training: ClassVar[bool] = False

    def check(self, cfg: Any) -> None:
        """Refuse a config this criterion cannot run (InvalidParameterError)."""


class StructuredCriterion(Criterion):
    """Ranks groups of coupled channels with a Torch-Pruning importance object."""

    structured: ClassVar[bool] = True

    @abstractmethod
    def importance(self, cfg: Any) -> Any:
        """Torch-Pruning's importance object for this config."""


class UnstructuredCriterion(Criterion):
    """Scores every weight; ``global_ranking`` ranks all layers together (else per layer)."""

    structured: ClassVar[bool] = False
    global_ranking: ClassVar[bool] = False

    @abstractmethod
    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        """One score tensor per weight of ``pruner.weights`` (a ``MaskedPruner``)."""


def criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: register ``cls`` as the pruning method ``cls.name``."""
    from core.pruning._config import PruningConfig

    def run(model: nn.Module, data: Any, config: PruningConfig,
            callbacks: Any = None) -> dict[str, Any]:
        """Prune in place along the config's schedule (see ``run_schedule``)."""
        from core.pruning._engine import run_schedule

        return run_schedule(model, data, config.replace(method=cls.name), callbacks)

    run.__name__ = cls.name.replace("-", "_")
    register_method(cls.name, area=AREA, config=PruningConfig, summary=cls.summary,
                    spec=cls())(run)
    return cls


def criterion_for(name: Any) -> Criterion:
    """The registered criterion of a pruning method, or a clear error listing them."""
    import core.pruning  # noqa: F401  (the criteria register on import)

    if not isinstance(name, str):
        raise InvalidParameterError("method", f"one of {method_names()}", name)
    try:
        spec = get_method(AREA, name).spec
    except InvalidParameterError:
        raise InvalidParameterError("method", f"one of {method_names()}", name) from None
    return spec


def method_names(*, structured: bool | None = None) -> list[str]:
    """The registered pruning methods (only structured / unstructured ones when asked)."""
    from core.registry import list_methods

    names = list_methods(AREA)
    if structured is None:
        return names
    return [n for n in names if get_method(AREA, n).spec.structured == structured]


# --- structured: Torch-Pruning's importance objects ---------------------------------------------
class _GroupMagnitude(StructuredCriterion):
    """Channels ranked by the Lp norm of their coupled weights."""

    p: ClassVar[int]
    summary = ("Remove whole channels/neurons/heads with the lowest {norm} norm (Torch-Pruning "
               "dependency graph); the model really gets smaller and faster.")

    def importance(self, cfg: Any) -> Any:
        return tp_module().importance.GroupMagnitudeImportance(p=self.p)


@criterion
class StructuredL1(_GroupMagnitude):
    name, p = "structured-l1", 1
    summary = _GroupMagnitude.summary.format(norm="L1")


@criterion
class StructuredL2(_GroupMagnitude):
    name, p = "structured-l2", 2
    summary = _GroupMagnitude.summary.format(norm="L2")


@criterion
class StructuredTaylor(StructuredCriterion):
    name = "structured-taylor"
    summary = ("Remove whole channels/neurons/heads with the lowest first-order Taylor "
               "importance |grad × weight| (Torch-Pruning).")
    needs_gradients = True

    def importance(self, cfg: Any) -> Any:
        return tp_module().importance.GroupTaylorImportance()


@criterion
class StructuredRandom(StructuredCriterion):
    name = "structured-random"
    summary = ("Remove random whole channels/neurons/heads (seeded; a baseline to compare "
               "the other criteria against).")

    def importance(self, cfg: Any) -> Any:
        import torch

        tp = tp_module()
        generator = torch.Generator().manual_seed(int(cfg.seed))

        class _Seeded(tp.importance.RandomImportance):
            # Torch-Pruning's RandomImportance draws from the global RNG; this one is seeded.
            @torch.no_grad()
            def __call__(self, group: Any, **kwargs: Any) -> torch.Tensor:
                _, idxs = group[0]
                return torch.rand(len(idxs), generator=generator)

        return _Seeded()


# --- unstructured: a score per weight ------------------------------------------------------------
def _magnitudes(pruner: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().abs() for n, p in pruner.weights.items()}


@criterion
class L1Unstructured(UnstructuredCriterion):
    name = "l1-unstructured"
    summary = ("Zero the smallest-magnitude weights of each layer; smaller download, same "
               "latency (dense kernels).")

    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        return _magnitudes(pruner)


@criterion
class GlobalMagnitude(UnstructuredCriterion):
    name = "global-magnitude"
    summary = ("Zero the smallest-magnitude weights across all layers at once; smaller "
               "download, same latency.")
    global_ranking = True

    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        return _magnitudes(pruner)


@criterion
class RandomUnstructured(UnstructuredCriterion):
    name = "random-unstructured"
    summary = "Zero random weights of each layer (a baseline to compare against)."

    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        import torch

        return {n: torch.rand(p.shape, generator=pruner.generator) + 1e-6
                for n, p in pruner.weights.items()}


@criterion
class TaylorUnstructured(UnstructuredCriterion):
    name = "taylor-unstructured"
    summary = ("Zero the weights with the lowest |grad × weight| summed over a slice of the "
               "training data (global ranking).")
    global_ranking = True
    needs_gradients = True

    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        import torch
        import torch.nn.functional as F

        acc = {n: torch.zeros_like(p) for n, p in pruner.weights.items()}
        X, y = pruner.data.X_train, pruner.data.y_train
        bs, model = pruner.cfg.batch_size, pruner.model
        model.eval()
        for i in range(min(pruner.cfg.score_batches, math.ceil(len(y) / bs))):
            model.zero_grad(set_to_none=True)
            xb = torch.from_numpy(X[i * bs:(i + 1) * bs])
            F.cross_entropy(model(xb), torch.from_numpy(y[i * bs:(i + 1) * bs])).backward()
            for n, p in pruner.weights.items():
                if p.grad is not None:
                    acc[n] += (p.grad * p.detach()).abs()
        model.zero_grad(set_to_none=True)
        return {n: a + 1e-12 for n, a in acc.items()}


@criterion
class Movement(UnstructuredCriterion):
    name = "movement"
    summary = ("Movement pruning: zero the weights moving towards zero while fine-tuning "
               "(scores −Σ grad × weight gathered during training).")
    scores_while_training = True

    def check(self, cfg: Any) -> None:
        if cfg.finetune_epochs is not None and cfg.finetune_epochs < 1:
            raise InvalidParameterError(
                "finetune_epochs", "≥ 1 for movement pruning (its scores are gathered while "
                "fine-tuning)", cfg.finetune_epochs)

    def scores(self, pruner: Any) -> dict[str, torch.Tensor]:
        import torch

        # movement score S = -sum(grad * W): weights moving away from zero score high
        live = torch.cat([s[pruner.masks[n]] for n, s in pruner.movement.items()])
        low = float(live.min()) if live.numel() else 0.0
        return {n: (s - low + 1e-6) for n, s in pruner.movement.items()}
