"""Comparison: re-measure variants side by side, the Pareto front, charts and report exports."""

from core.compare._charts import (
    accuracy_latency,
    all_figures,
    lineage_graph,
    metric_bars,
    size_latency,
)
from core.compare._compare import COLUMNS, compare, comparison_rows, measure_variants
from core.compare._export import EXPORT_FILES, to_csv, to_html, to_markdown, write_exports
from core.compare._lineage import find_run, lineage
from core.compare._pareto import dominates, pareto_front

__all__ = [
    "COLUMNS",
    "EXPORT_FILES",
    "accuracy_latency",
    "all_figures",
    "compare",
    "comparison_rows",
    "dominates",
    "find_run",
    "lineage",
    "lineage_graph",
    "measure_variants",
    "metric_bars",
    "pareto_front",
    "size_latency",
    "to_csv",
    "to_html",
    "to_markdown",
    "write_exports",
]

from core._callable import make_package_callable  # noqa: E402

make_package_callable(__name__, compare)  # ``from core import compare`` is callable
