"""The ``factorize`` verb: low-rank layers at a rank ratio, optional fine-tune, measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import Field

from core.callbacks import Callbacks
from core.config import SEED_MAX
from core.errors import InvalidParameterError, check_range
from core.registry import MethodConfig, register_method, resolve_config

__all__ = ["LowRankConfig", "LowRankFactorizer", "factorize"]


@dataclass(frozen=True)
class LowRankConfig(MethodConfig):
    """``rank_ratio``: kept rank as a fraction of each layer's full rank (⌈ratio·full⌉);
    ``layers``: names to factorize (empty = every Linear/Conv2d); then ``finetune_epochs``
    of fine-tuning at ``lr`` (0 = none; the best validated state is kept)."""

    rank_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    layers: tuple[str, ...] = ()
    finetune_epochs: Annotated[int, Field(ge=0, le=1000)] = 3
    lr: Annotated[float, Field(gt=0, le=10)] = 0.005
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0
    retired_keys: ClassVar[tuple[str, ...]] = ("schema",)  # the version before schema_version
    method: Literal["svd"] = "svd"

    def __post_init__(self) -> None:
        check_range("rank_ratio", self.rank_ratio, low=0.0, high=1.0, low_inclusive=False)
        if isinstance(self.layers, str) or not all(isinstance(n, str) for n in self.layers):
            raise InvalidParameterError("layers", "a list of layer names", self.layers)
        object.__setattr__(self, "layers", tuple(self.layers))
        check_range("finetune_epochs", self.finetune_epochs, low=0, high=1000, kind=int)
        check_range("lr", self.lr, low=0.0, high=10.0, low_inclusive=False)
        check_range("batch_size", self.batch_size, low=1, high=65536, kind=int)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        if self.method != "svd":
            raise InvalidParameterError("method", "'svd'", self.method)


@register_method("svd", area="lowrank", config=LowRankConfig,
                 summary="Truncated SVD: Linear → two Linears, Conv2d → k×k then 1×1")
def _svd(model: Any, rank_ratio: float, layers: Any = None) -> Any:
    from core.lowrank._factorize import factorize_model  # torch: imported where it is used

    return factorize_model(model, rank_ratio, layers)


def factorize(model_or_run: Any, data: Any = None, config: Any = None, *,
              out_dir: str | Path, callbacks: Callbacks | None = None,
              parent: str | None = None, measure_options: Mapping[str, Any] | None = None,
              overwrite: bool = False, **overrides: Any) -> Any:
    """Factorize a torch model's layers, fine-tune, and write a run measured beside the input."""
    from core.artifacts import staging
    from core.lowrank._factorize import factorize_model
    from core.runs import RunResult
    from core.torch_variant import open_torch_input, write_torch_variant
    from core.training import TrainConfig, finetune, seed_everything

    cfg = resolve_config(config, overrides, area="lowrank", cls=LowRankConfig)
    cb = Callbacks.ensure(callbacks)
    inp = open_torch_input(model_or_run, data, operation="Low-rank factorization",
                           convert_onnx=True)
    seed_everything(cfg.seed)
    cb.progress(0.05, "Factorizing")
    model, info = factorize_model(inp.model, cfg.rank_ratio, cfg.layers or None)
    warnings = []
    grown = [e["layer"] for e in info.layers if e["params_after"] >= e["params_before"]]
    if grown:
        warnings.append(f"At rank_ratio {cfg.rank_ratio} these layers have no fewer parameters "
                        f"than before (two factors): {', '.join(grown)}.")
    tuned = None
    if cfg.finetune_epochs:
        tcfg = TrainConfig(epochs=cfg.finetune_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                           seed=cfg.seed)
        tuned = finetune(model, inp.data, tcfg, callbacks=cb).to_dict()
    model.eval()
    extra = {"lowrank": {**info.to_dict(), "finetune": tuned}}
    with staging(out_dir, overwrite=overwrite, inputs=[model_or_run]) as tmp:
        report = write_torch_variant(
            tmp, operation="factorize", method=cfg.method, config=cfg.to_dict(), inp=inp,
            result_model=model, seed=cfg.seed, warnings=warnings, parent=parent, extra=extra,
            measure_options=measure_options, callbacks=cb)
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


class LowRankFactorizer:
    """Seed facade: ``LowRankFactorizer().factorize(model=..., rank_ratio=0.5, layers=[...])``.

    Returns the factorized module (``last_info`` per layer). With ``data`` and ``out_dir``
    it runs the ``factorize`` verb (fine-tune, measurement) and returns its RunResult.
    """

    def __init__(self, **config: Any) -> None:
        self.config = LowRankConfig.from_dict(config)
        self.last_info: Any = None

    def factorize(self, model: Any, rank_ratio: float | None = None, layers: Any = None, *,
                  data: Any = None, out_dir: str | Path | None = None, **options: Any) -> Any:
        from core.lowrank._factorize import factorize_model

        changes: dict[str, Any] = {}
        if rank_ratio is not None:
            changes["rank_ratio"] = rank_ratio
        if layers is not None:
            changes["layers"] = tuple(layers)
        cfg = self.config.replace(**changes)
        if out_dir is not None:
            result = factorize(model, data, cfg, out_dir=out_dir, **options)
            self.last_info = result.report["lowrank"]
            return result
        out, info = factorize_model(model, cfg.rank_ratio, cfg.layers or None)
        self.last_info = info.to_dict()
        return out
