"""The "recipe" target: each trial prunes and/or quantizes a trained model, all measured."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.callbacks import Callbacks
from core.errors import InvalidParameterError
from core.tuning._config import TuneConfig
from core.tuning._objective import StudyObjective
from core.tuning._space import SearchSpace


def recipe_baseline(config: TuneConfig, data: Any, folder: Path, *,
                    measure_options: Mapping[str, Any], callbacks: Callbacks) -> Path:
    """The trained model every recipe trial starts from (trained once, then reused)."""
    from core.runs import train_baseline
    from core.training import TrainConfig

    if (folder / "report.json").is_file():
        return folder
    train = {"epochs": config.epochs, "seed": config.seed, **dict(config.train or {})}
    train_baseline(config.model, data, TrainConfig(**train), out_dir=folder,
                   model_kwargs=dict(config.model_kwargs or {}), callbacks=callbacks,
                   measure_options=measure_options)
    return folder


def check_recipe_base(base_dir: Path, data: Any, space: SearchSpace) -> None:
    """Refuse, before any trial, pruning choices the base model cannot take (an ONNX-only
    run folder cannot be pruned; a TorchScript/.pt2 one only without structure changes)."""
    from core.pruning import unsupported_methods

    if "pruning_method" not in space or space["pruning_method"].kind != "categorical":
        return
    wanted = [m for m in space["pruning_method"].choices if m != "none"]
    refused = unsupported_methods(base_dir, data, wanted) if wanted else {}
    if refused:
        allowed = ["none"] + [m for m in wanted if m not in refused]
        first = next(iter(refused))
        raise InvalidParameterError(
            "space.pruning_method", f"choices this base model supports ({allowed}); "
            f"{refused[first].rstrip('.')}", first)


class RecipeObjective(StudyObjective):
    """Prune, fuse, factorize and quantize (each optional) the base run; score the final run
    folder.

    Every figure comes from the measured run folders that ``prune``/``quantize`` write
    (accuracy on the test split, p50 latency at batch 1, size of the artifact on disk).
    Trial folders are kept under ``trials_dir`` so "train best" can hand one out.
    """

    def __init__(self, config: TuneConfig, space: SearchSpace, data: Any, base_dir: Path,
                 trials_dir: Path, callbacks: Callbacks, *, threads: int = 1) -> None:
        self.config, self.space, self.data = config, space, data
        self.base_dir, self.trials_dir, self.cb = Path(base_dir), Path(trials_dir), callbacks
        self.measure = {"budget_s": config.latency_budget_s, "memory": False,
                        "threads": threads}

    def _rewrite(self, params: Mapping[str, Any], src: Path, folder: Path, inner: Callbacks,
                 steps: list[dict[str, Any]], info: dict[str, Any]) -> Path:
        """The optional fusion and low-rank steps (after pruning, before quantization)."""
        from core.fusion import FusionConfig, fuse
        from core.lowrank import LowRankConfig, factorize

        if params.get("fusion_method", "none") != "none":
            fcfg = FusionConfig(seed=self.config.seed)
            fuse(src, self.data, fcfg, out_dir=folder / "fused", callbacks=inner,
                 measure_options=self.measure)
            src = folder / "fused"
            steps.append({"operation": "fuse", **fcfg.to_dict()})
        ratio = params.get("rank_ratio", "none")
        if ratio not in ("none", None) and float(ratio) < 1.0:
            finetune = int(params.get("finetune_epochs", 1))
            lcfg = LowRankConfig(rank_ratio=float(ratio), finetune_epochs=finetune,
                                 seed=self.config.seed)
            factorize(src, self.data, lcfg, out_dir=folder / "factorized", callbacks=inner,
                      measure_options=self.measure)
            src = folder / "factorized"
            steps.append({"operation": "factorize", **lcfg.to_dict()})
            info["epochs_planned"] += finetune
            info["epochs_run"] += finetune
        return src

    def _run(self, trial: Any, info: dict[str, Any]) -> float | Sequence[float]:
        from core.artifacts import read_report
        from core.pruning import PruningConfig, prune
        from core.quantization import make_config, quantize

        cfg = self.config
        params = self.space.suggest(trial)
        folder = self.trials_dir / f"trial-{trial.number}"
        shutil.rmtree(folder, ignore_errors=True)
        inner = Callbacks(cancel=self.cb.cancel)
        src, steps = self.base_dir, []
        method = params.get("pruning_method", "none")
        finetune = int(params.get("finetune_epochs", 1))
        info["epochs_planned"] = finetune if method != "none" else 0
        info["epochs_run"] = 0
        if method != "none":
            pcfg = PruningConfig(method=method, sparsity=float(params.get("sparsity", 0.5)),
                                 finetune_epochs=finetune, seed=cfg.seed)
            prune(src, self.data, pcfg, out_dir=folder / "pruned", callbacks=inner,
                  measure_options=self.measure)
            src = folder / "pruned"
            steps.append({"operation": "prune", **pcfg.to_dict()})
            info["epochs_run"] = finetune
        src = self._rewrite(params, src, folder, inner, steps, info)
        quant = params.get("quantization_method", "none")
        if quant != "none":
            options = {"calibration": params.get("calibration"), "seed": cfg.seed,
                       "per_channel": params.get("per_channel")}
            qcfg = make_config(quant, options, strict=False)
            quantize(src, self.data, qcfg, out_dir=folder / "quantized", callbacks=inner,
                     measure_options=self.measure)
            src = folder / "quantized"
            steps.append({"operation": "quantize", "method": quant, **qcfg.to_dict()})
        res = read_report(src)["result"]
        lat = float(res["latency_ms"]["1"]["p50"])
        info.update(run_dir=str(src), steps=steps, latency_ms=lat, size_bytes=res["size_bytes"],
                    test_accuracy=res["accuracy"], val_curve=[res["accuracy"]])
        limits = cfg.constraints
        if limits:
            own = {"latency_ms": lat, "size_bytes": float(res["size_bytes"])}
            violations = [own[k] - v for k, v in limits.items()]
            info["constraints"] = violations
            info["feasible"] = all(v <= 0 for v in violations)
        values = {"accuracy": float(res["accuracy"]), "latency": lat,
                  "size": float(res["size_bytes"])}
        out = [values[o] for o in cfg.objectives]
        return out[0] if len(out) == 1 else out
