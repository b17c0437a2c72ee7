"""``HyperparameterTuner``: the seeds' facade, a thin layer over the same Optuna samplers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from core.tuning._space import DEFAULT_PARAM_SPACE, parse_space


@dataclass
class TuningResult:
    """Best parameters and score, and every trial (params, score, state)."""

    best_params: dict[str, Any]
    best_score: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    sampler: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"best_params": self.best_params, "best_score": self.best_score,
                "history": self.history, "sampler": self.sampler}


def _call(fn: Callable[..., Any], params: dict[str, Any], leading: tuple[Any, ...]) -> Any:
    """``fn(*leading, **the params it names)`` when its parameters are space keys, else
    ``fn(*leading, params)`` (the whole dict)."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn(*leading, params)
    named = [p for p in list(sig.parameters.values())[len(leading):]
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(*leading, **params)
    if named and all(p.name in params for p in named):
        return fn(*leading, **{p.name: params[p.name] for p in named})
    return fn(*leading, params)


class HyperparameterTuner:
    """``HyperparameterTuner(model_fn, train_fn, param_space, metric, maximize)``.

    ``model_fn(params) -> model``; ``train_fn(model, params) -> {metric: value}`` (or a
    number). A function whose parameters are named after the space's keys (the seeds'
    ``lambda hidden_dims: ...``, ``lambda model, inner_lr: ...``) gets only those, by name.
    ``param_space`` uses the studio's space format (lists are choices); the default
    is ``DEFAULT_PARAM_SPACE``. Searches run in memory with Optuna's samplers.
    """

    def __init__(self, model_fn: Callable[[dict[str, Any]], Any],
                 train_fn: Callable[[Any, dict[str, Any]], Any],
                 param_space: Mapping[str, Any] | None = None, metric: str = "accuracy",
                 maximize: bool = True, *, seed: int = 0, grid_points: int = 3) -> None:
        self.model_fn, self.train_fn = model_fn, train_fn
        self.space = parse_space(dict(param_space) if param_space is not None
                                 else DEFAULT_PARAM_SPACE)
        self.metric, self.maximize, self.seed = metric, maximize, seed
        self.grid_points = grid_points
        self.results: TuningResult | None = None

    def _objective(self, trial: Any) -> float:
        params = self.space.suggest(trial)
        model = _call(self.model_fn, params, ())
        out = _call(self.train_fn, params, (model,))
        value = out[self.metric] if isinstance(out, Mapping) else out
        return float(value)

    def _search(self, sampler_name: str, n_trials: int | None) -> TuningResult:
        import optuna

        from core.registry import get_method
        from core.tuning._search import _quiet

        _quiet()
        sampler = get_method("tuning", sampler_name).fn(
            self.space, seed=self.seed, grid_points=self.grid_points,
            n_startup_trials=max(2, min(10, (n_trials or 10) // 3)))
        study = optuna.create_study(direction="maximize" if self.maximize else "minimize",
                                    sampler=sampler)
        study.optimize(self._objective, n_trials=n_trials)
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        history = [{"number": t.number, "params": self.space.decode(t.params),
                    "score": t.value, "state": t.state.name.lower()} for t in study.trials]
        best = study.best_trial if done else None
        self.results = TuningResult(self.space.decode(best.params) if best else {},
                                    best.value if best else None, history, sampler_name)
        return self.results

    def grid_search(self) -> TuningResult:
        """Every point of the grid (continuous ranges get ``grid_points`` values)."""
        return self._search("grid", self.space.grid_size(self.grid_points))

    def random_search(self, n_trials: int = 20) -> TuningResult:
        return self._search("random", n_trials)

    def optuna_search(self, n_trials: int = 20, sampler: str = "tpe") -> TuningResult:
        return self._search(sampler, n_trials)
