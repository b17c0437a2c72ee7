"""The ``fuse`` verb: fold BN and activations into Conv/Linear, check outputs, measure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

import numpy as np
from pydantic import Field

from core.callbacks import Callbacks
from core.config import SEED_MAX
from core.errors import InvalidParameterError, UnsupportedModelError, check_range
from core.fusion._patterns import PATTERNS, normalize_pattern
from core.registry import MethodConfig, register_method, resolve_config

__all__ = ["DEFAULT_PATTERNS", "FusionConfig", "OperatorFuser", "fuse"]

DEFAULT_PATTERNS = ("conv-bn-relu", "conv-bn-relu6", "linear-bn-relu", "linear-relu6")


@dataclass(frozen=True)
class FusionConfig(MethodConfig):
    """``patterns``: which chains to fuse (a pattern also fuses its shorter prefixes' links:
    ``conv-bn-relu`` folds BN and fuses the ReLU). ``atol``: the largest output difference
    (on the test split, relative to the largest output) accepted as "the same outputs"."""

    patterns: tuple[Any, ...] = DEFAULT_PATTERNS
    atol: Annotated[float, Field(gt=0, le=1)] = 1e-4
    seed: Annotated[int, Field(ge=0, le=SEED_MAX)] = 0
    retired_keys: ClassVar[tuple[str, ...]] = ("schema",)  # the version before schema_version
    method: Literal["fx-fuse"] = "fx-fuse"

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str) or not isinstance(self.patterns, (list, tuple)):
            raise InvalidParameterError("patterns", f"a list of {list(PATTERNS)}",
                                        self.patterns)
        object.__setattr__(self, "patterns",
                           tuple(dict.fromkeys(normalize_pattern(p) for p in self.patterns)))
        check_range("atol", self.atol, low=0.0, high=1.0, low_inclusive=False)
        check_range("seed", self.seed, low=0, high=SEED_MAX, kind=int)
        if self.method != "fx-fuse":
            raise InvalidParameterError("method", "'fx-fuse'", self.method)


@register_method("fx-fuse", area="fusion", config=FusionConfig,
                 summary="Fold BatchNorm into Conv/Linear and run ReLU/ReLU6 in place")
def _fx_fuse(model: Any, patterns: Any) -> Any:
    from core.fusion._fuse import fuse_model  # torch: imported where a model is fused

    return fuse_model(model, patterns)


def _max_rel_diff(a: Any, b: Any, X: np.ndarray) -> float:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(X[:256]))
        ref, got = a(x).float(), b(x).float()
    return float((ref - got).abs().max() / ref.abs().max().clamp_min(1e-12))


def fuse(model_or_run: Any, data: Any = None, config: Any = None, *,
         out_dir: str | Path, callbacks: Callbacks | None = None, parent: str | None = None,
         measure_options: Mapping[str, Any] | None = None, overwrite: bool = False,
         **overrides: Any) -> Any:
    """Fuse operators of a torch model and write a run folder measured beside the input.

    Refuses a model in which no pattern matched (nothing would change) and a fused model
    whose outputs differ from the input's by more than ``atol`` (relative).
    """
    from core.artifacts import staging
    from core.fusion._fuse import fuse_model
    from core.runs import RunResult
    from core.torch_variant import open_torch_input, write_torch_variant

    cfg = resolve_config(config, overrides, area="fusion", cls=FusionConfig)
    cb = Callbacks.ensure(callbacks)
    inp = open_torch_input(model_or_run, data, operation="Fusion")
    cb.progress(0.05, "Fusing")
    fused, info = fuse_model(inp.model, cfg.patterns)
    if not info.fused:
        raise UnsupportedModelError(
            f"Nothing to fuse: no {', '.join(cfg.patterns)} chain in this model (a "
            "Conv/Linear whose only user is the BatchNorm or activation that follows).")
    diff = _max_rel_diff(inp.model, fused, inp.data.split("test")[0])
    if not diff <= cfg.atol:
        raise UnsupportedModelError(f"The fused model's outputs differ by {diff:.2e} "
                                    f"(relative), more than atol={cfg.atol}; nothing written.")
    extra = {"fusion": {**info.to_dict(), "max_rel_output_diff": diff,
                        "patterns": list(cfg.patterns)}}
    notes = ["The artifact is model.onnx; ONNX Runtime folds BatchNorm and fuses Conv+ReLU "
             "itself when it loads a model, so the fusion's speed-up is that of PyTorch eager "
             "(measured here: baseline and result are both torch modules)."]
    with staging(out_dir, overwrite=overwrite, inputs=[model_or_run]) as tmp:
        report = write_torch_variant(
            tmp, operation="fuse", method=cfg.method, config=cfg.to_dict(), inp=inp,
            result_model=fused, seed=cfg.seed, warnings=notes, parent=parent, extra=extra,
            measure_options=measure_options, callbacks=cb)
    cb.progress(1.0, "Done")
    return RunResult(Path(out_dir), report)


class OperatorFuser:
    """Seed facade: ``OperatorFuser().fuse_operations(model=..., patterns=[[...], ...])``.

    Returns the fused module (``last_info`` says what was fused). With ``data`` and
    ``out_dir`` it runs the ``fuse`` verb instead and returns its RunResult.
    """

    def __init__(self, **config: Any) -> None:
        self.config = FusionConfig.from_dict(config)
        self.last_info: Any = None

    def fuse_operations(self, model: Any, patterns: Any = None, *, data: Any = None,
                        out_dir: str | Path | None = None, **options: Any) -> Any:
        from core.fusion._fuse import fuse_model

        cfg = self.config if patterns is None else self.config.replace(patterns=tuple(patterns))
        if out_dir is not None:
            result = fuse(model, data, cfg, out_dir=out_dir, **options)
            self.last_info = result.report["fusion"]
            return result
        fused, info = fuse_model(model, cfg.patterns)
        if not info.fused:
            raise UnsupportedModelError(f"Nothing to fuse: no {', '.join(cfg.patterns)} chain "
                                        "in this model.")
        self.last_info = info.to_dict()
        return fused
