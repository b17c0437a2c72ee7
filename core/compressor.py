"""``ModelCompressor``: the seed documents' chaining facade over the prune/quantize/distill verbs.

It only forwards: each step calls one verb on the current variant, writes a run folder under
``workdir`` and makes that folder the input of the next step (so the lineage is kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.artifacts import make_bundle, new_run_id
from core.runs import RunResult

__all__ = ["ModelCompressor"]


class ModelCompressor:
    """``ModelCompressor(model, data).prune(...).quantize(...)``; ``.benchmark()``, ``.save()``.

    ``model`` is an nn.Module, a model file or a run folder; ``data`` a Dataset or a data set
    name (default: the run folder's data). Each step returns the compressor, so steps chain;
    ``history`` holds every step's RunResult.
    """

    def __init__(self, model: Any, data: Any = None, *, workdir: str | Path = "results",
                 measure_options: dict[str, Any] | None = None) -> None:
        self.current: Any = model
        self.data = data
        self.workdir = Path(workdir)
        self.measure_options = measure_options
        self.history: list[RunResult] = []

    def _step(self, verb: Any, operation: str, config: Any, **kwargs: Any) -> ModelCompressor:
        result = verb(self.current, self.data, config, out_dir=self.workdir /
                      new_run_id(operation), measure_options=self.measure_options, **kwargs)
        self.history.append(result)
        self.current = result.run_dir
        return self

    def prune(self, method: str = "structured-l2", sparsity: float = 0.5,
              **config: Any) -> ModelCompressor:
        """Prune the current variant (see ``core.pruning.PruningConfig`` for options)."""
        from core.pruning import PruningConfig, prune

        cfg = PruningConfig.from_dict({"method": method, "sparsity": sparsity, **config})
        return self._step(prune, "prune", cfg)

    def quantize(self, method: str = "ort-static-int8", **options: Any) -> ModelCompressor:
        """Quantize the current variant (see ``core.quantization`` for the methods)."""
        from core.quantization import make_config, quantize

        return self._step(quantize, "quantize", make_config(method, options))

    def distill(self, method: str = "soft-target", width: float = 0.5,
                **config: Any) -> ModelCompressor:
        """Distil the current variant into a student ``width`` times as wide."""
        from core.distillation import DistillConfig, distill

        cfg = DistillConfig.from_dict({"method": method, "width": width, **config})
        return self._step(distill, "distill", cfg)

    @property
    def report(self) -> dict[str, Any]:
        """The report of the last step (baseline vs result, measured side by side)."""
        if not self.history:
            raise ValueError("No step has run yet: call prune(), quantize() or distill().")
        return self.history[-1].report

    def benchmark(self) -> dict[str, Any]:
        """Measure the current variant under the protocol; returns its measurement dict."""
        from core.runs import benchmark_model

        if not isinstance(self.current, (str, Path)):
            from core.measure import measure

            return measure(self.current, self.data, **(self.measure_options or {})).to_dict()
        out = self.workdir / new_run_id("benchmark")
        report = benchmark_model(out, model=self.current, data=self.data or
                                 _run_data(self.current), measure_options=self.measure_options)
        return report["result"]

    def save(self, path: str | Path) -> Path:
        """Write the current variant's download bundle (zip) to ``path``."""
        if not self.history:
            raise ValueError("Nothing to save yet: run a compression step first.")
        return make_bundle(self.current, path)


def _run_data(run_dir: str | Path) -> Any:
    from core.artifacts import read_report
    from core.runs import data_from_report

    return data_from_report(read_report(run_dir))
