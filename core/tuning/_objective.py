"""One trial: build the model, train it with per-epoch reports, measure latency and size."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from core.callbacks import Callbacks
from core.errors import CancelledError
from core.tuning._config import TuneConfig, split_params
from core.tuning._space import SearchSpace

LATENCY_TOLERANCE = 1.10  # peers of the early-stopping rule may be up to 10 % slower (noise)


def measure_latency_ms(model: Any, data: Any, *, budget_s: float, threads: int = 1,
                       check: Any = None) -> float:
    """Median batch-1 latency in ms under the studio's timing protocol (timed, not MACs)."""
    from core.measure import as_predictor, interleaved_latency

    model.eval()
    X, _ = data.split("test") if len(data.y_test) else data.split("val")
    lat = interleaved_latency({"m": as_predictor(model, threads=threads)}, X,
                              batch_sizes=(1,), budget_s=budget_s, rounds=5, check=check)
    return float(lat["m"]["1"]["p50"])


@dataclass
class MultiObjectiveMedianRule:
    """Early stopping for multi-objective studies (Optuna cannot prune them).

    At epoch ``s`` a trial stops when its validation accuracy is below the median accuracy,
    at the same epoch, of the completed trials that are at least as good on the study's other
    objectives (latency and size, known before training). A trial that may still land on
    the Pareto front because it is faster or smaller than the completed ones is not compared
    with them, so the rule spares the fast/small end of the front.
    """

    n_startup_trials: int = 3
    n_warmup_steps: int = 1
    others: tuple[str, ...] = ()
    stopped: list[int] = field(default_factory=list)

    def should_stop(self, study: Any, step: int, accuracy: float,
                    own: Mapping[str, float]) -> bool:
        import optuna

        if step <= self.n_warmup_steps:
            return False
        peers = []
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            info = trial_info(t)
            curve = info.get("val_curve") or []
            if len(curve) < step:
                continue
            if all(_le(info.get(k), own.get(k)) for k in self.others):
                peers.append(curve[step - 1])
        if len(peers) < self.n_startup_trials:
            return False
        return accuracy < float(np.median(peers))


def optuna_pruned() -> type:
    import optuna

    return optuna.TrialPruned


def trial_info(trial: Any) -> dict[str, Any]:
    """What the studio recorded on a trial (one user attribute, written once per trial)."""
    return dict(trial.user_attrs.get("studio") or {})


def _le(peer: Any, own: Any) -> bool:
    if peer is None or own is None:
        return False
    return float(peer) <= float(own) * LATENCY_TOLERANCE


class StudyObjective:
    """What every studio objective does around its ``_run(trial, info)`` (each subclass has
    one): a cancelled trial is queued again (a resumed study runs it), errors are kept, and
    the trial's info is written once."""

    def __call__(self, trial: Any) -> float | Sequence[float]:
        info: dict[str, Any] = {}
        try:
            return self._run(trial, info)
        except CancelledError:
            trial.study.enqueue_trial(dict(trial.params), skip_if_exists=False)
            raise
        except Exception as exc:
            if not isinstance(exc, optuna_pruned()):
                info["error"] = f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            # One storage write per trial (each costs ~10 ms on SQLite).
            if "constraints" in info:
                trial.set_user_attr("constraints", info["constraints"])
            trial.set_user_attr("studio", info)


class TrialObjective(StudyObjective):
    """The callable Optuna runs: returns the objectives' values for one trial."""

    def __init__(self, config: TuneConfig, space: SearchSpace, data: Any, family: str,
                 base_kwargs: Mapping[str, Any], callbacks: Callbacks, *, threads: int = 1,
                 latency_budget_s: float | None = None) -> None:
        self.config, self.space, self.data, self.family = config, space, data, family
        self.base_kwargs = dict(base_kwargs)
        self.cb = callbacks
        self.threads = threads
        self.budget_s = latency_budget_s or config.latency_budget_s
        opts = config.pruner_options or {}
        others = tuple(k for k, o in (("latency_ms", "latency"), ("size_bytes", "size"))
                       if o in config.objectives)
        self.rule = MultiObjectiveMedianRule(
            n_startup_trials=int(opts.get("n_startup_trials", 3)),
            n_warmup_steps=int(opts.get("n_warmup_steps", 1)), others=others,
        ) if config.multi_objective and config.pruner != "none" \
            and "accuracy" in config.objectives else None

    def _build(self, trial: Any, info: dict[str, Any]) -> tuple[Any, Any]:
        """The trial's sampled TrainConfig and untrained model (recorded in ``info``)."""
        from core.models import model_for_data
        from core.training import TrainConfig, seed_everything

        cfg = self.config
        params = self.space.suggest(trial)
        train_kw, model_kw = split_params(params, self.family, cfg.train,
                                          {**self.base_kwargs, **(cfg.model_kwargs or {})},
                                          cfg.epochs, cfg.seed)
        info["model_kwargs"] = _jsonable(model_kw)
        info["train_config"] = _jsonable(train_kw)
        tcfg = TrainConfig(**train_kw)
        seed_everything(tcfg.seed)  # the same initial weights as train_best and a baseline
        model = model_for_data(self.family, self.data.input_shape, self.data.num_classes,
                               **model_kw)
        return tcfg, model

    def _latency(self, model: Any) -> float:
        return measure_latency_ms(model, self.data, budget_s=self.budget_s,
                                  threads=self.threads, check=self.cb.check)

    def _refuse_infeasible(self, model: Any, info: dict[str, Any], own: dict[str, float]
                           ) -> None:
        """Measured before training: an infeasible architecture costs no training."""
        import optuna

        limits = self.config.constraints
        need_latency_first = "latency_ms" in limits or (
            self.rule is not None and "latency_ms" in self.rule.others)
        if need_latency_first:
            own["latency_ms"] = self._latency(model)
            info["latency_ms"] = own["latency_ms"]
        if limits:
            violations = _record_constraints(own, limits, info)
            if any(v > 0 for v in violations):
                info["stopped"] = "infeasible"
                raise optuna.TrialPruned(_infeasible_text(own, limits))

    def _epoch_hook(self, trial: Any, info: dict[str, Any], curve: list[float], epochs: int,
                    own: Mapping[str, float]) -> Any:
        """The per-epoch callback: record the validation curve; prune (single objective:
        Optuna's pruner; several: the multi-objective median rule)."""
        import optuna

        single = not self.config.multi_objective
        pruner = self.config.pruner

        def on_epoch(row: Mapping[str, Any]) -> None:
            step = int(row["epoch"])
            acc = float(row["val_accuracy"])
            curve.append(acc)
            info["epochs_run"] = step
            info["val_curve"] = list(curve)
            if single and pruner != "none":
                trial.report(acc, step)
                if trial.should_prune():
                    info["stopped"] = "pruner"
                    raise optuna.TrialPruned(f"pruned at epoch {step} (val acc {acc:.4f})")
            elif self.rule is not None and step < epochs and \
                    self.rule.should_stop(trial.study, step, acc, own):
                info["stopped"] = "median-rule"
                raise optuna.TrialPruned(f"stopped at epoch {step} by the multi-objective "
                                         f"median rule (val acc {acc:.4f})")

        return on_epoch

    def _run(self, trial: Any, info: dict[str, Any]) -> float | Sequence[float]:
        from core.measure import serialized_size
        from core.training import train

        cfg = self.config
        tcfg, model = self._build(trial, info)
        epochs = tcfg.epochs if "accuracy" in cfg.objectives else 0
        info["epochs_planned"] = epochs
        info["epochs_run"] = 0
        size = serialized_size(model)
        info["size_bytes"] = size
        own: dict[str, float] = {"size_bytes": float(size)}
        self._refuse_infeasible(model, info, own)
        curve: list[float] = []
        test_acc = float("nan")
        if epochs:
            inner = Callbacks(on_metrics=self._epoch_hook(trial, info, curve, epochs, own),
                              cancel=self.cb.cancel)
            result = train(model, self.data, tcfg, callbacks=inner)
            test_acc = result.metrics.accuracy
        info["test_accuracy"] = test_acc
        values: dict[str, float] = {"accuracy": curve[-1] if curve else float("nan"),
                                    "size": float(size)}
        if "latency" in cfg.objectives:
            lat = self._latency(model)
            info["latency_ms"] = lat
            values["latency"] = lat
            own["latency_ms"] = lat
            if cfg.constraints:  # the trained model's measurement decides feasibility
                _record_constraints(own, cfg.constraints, info)
        out = [values[o] for o in cfg.objectives]
        if any(isinstance(v, float) and math.isnan(v) for v in out):
            raise ValueError("the data set has no validation rows to score a trial")
        return out[0] if not cfg.multi_objective else out


def _record_constraints(own: Mapping[str, float], limits: Mapping[str, float],
                        info: dict[str, Any]) -> list[float]:
    """Each constraint's violation (> 0: broken), recorded with feasibility in ``info``."""
    violations = [own.get(k, 0.0) - v for k, v in limits.items()]
    info["constraints"] = violations
    info["feasible"] = all(v <= 0 for v in violations)
    return violations


def _infeasible_text(own: Mapping[str, float], limits: Mapping[str, float]) -> str:
    parts = [f"{k} {own.get(k, 0):.4g} > {v:.4g}" for k, v in limits.items()
             if own.get(k, 0) > v]
    return "infeasible before training: " + ", ".join(parts)


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
