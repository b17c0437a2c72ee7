"""Limits for a shared server: sizes checked before allocation, compute budgets at submit.

Each limit reads an environment variable (a Space sets them as variables) every time it is
checked, and its default lets every documented example and test run. Data and model sizes are
checked in every interface (``core.data``, ``core.models``); compute budgets are checked when a
job is submitted (``core.jobs``), so a REST client gets a 422 naming the parameter and the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidParameterError

__all__ = ["LIMITS", "Limit", "LimitError", "check_limit", "get_limit", "limits_table"]


@dataclass(frozen=True)
class Limit:
    """One limit: its environment variable, default, unit and what it bounds."""

    env: str
    default: float
    unit: str
    what: str
    integer: bool = True

    def value(self) -> float:
        return env_number(self.env, self.default, integer=self.integer)


def env_number(name: str, default: Any, *, integer: bool = True) -> Any:
    """The positive number in the environment variable ``name`` (``default`` when unset); a
    bad value is an InvalidParameterError naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise InvalidParameterError(name, "an integer" if integer else "a number",
                                    raw) from None
    if value <= 0:
        raise InvalidParameterError(name, "> 0", raw)
    return value


LIMITS: dict[str, Limit] = {
    "data_mb": Limit("STUDIO_MAX_DATA_MB", 256, "MB",
                     "a data file's values after decompression, counted as float64 (8 bytes "
                     "per value), read from the .npy headers or the CSV shape before loading",
                     integer=False),
    "data_rows": Limit("STUDIO_MAX_DATA_ROWS", 1_000_000, "rows", "rows of a data file"),
    "data_columns": Limit("STUDIO_MAX_DATA_COLUMNS", 100_000, "columns",
                          "columns of a CSV file, counted in its header line before it is "
                          "parsed"),
    "model_params": Limit("STUDIO_MAX_MODEL_PARAMS", 50_000_000, "parameters",
                          "parameters of a built-in model (counted before its weights exist)"),
    "model_layers": Limit("STUDIO_MAX_MODEL_LAYERS", 64, "layers",
                          "layers of a built-in model (entries of hidden_dims/channels, depth)"),
    "train_samples": Limit("STUDIO_MAX_TRAIN_SAMPLES", 10_000_000, "samples",
                           "training samples one job may process: epochs × training rows, "
                           "summed over trials, steps, candidates and clients (checked at "
                           "submit)"),
    "trials": Limit("STUDIO_MAX_TRIALS", 1000, "trials", "trials of one tuning job"),
    "tune_s": Limit("STUDIO_MAX_TUNE_S", 3600, "s",
                    "a tuning job's time limit; a job without `timeout_s` gets this one",
                    integer=False),
    "clients": Limit("STUDIO_MAX_CLIENTS", 10_000, "clients",
                     "simulated clients at one federated client count"),
    "model_mb": Limit("STUDIO_MAX_MODEL_MB", 2048, "MB",
                      "a model file's tensors as declared before loading: ONNX initializers "
                      "and external data, the members of a .pt/.pt2 archive after "
                      "decompression", integer=False),
    "model_nodes": Limit("STUDIO_MAX_MODEL_NODES", 100_000, "nodes",
                         "operator nodes of an ONNX graph, subgraphs included and each "
                         "local function call counted as the nodes it inlines, counted before "
                         "ONNX Runtime loads it"),
    "model_input": Limit("STUDIO_MAX_MODEL_INPUT", 4_000_000, "values",
                         "values in one sample of a model's declared input (ONNX input dims, "
                         "e.g. 3×224×224 = 150,528)"),
    "serve_max_batch": Limit("STUDIO_SERVE_MAX_BATCH", 256, "rows",
                             "rows in one prediction request to a served model (`studio "
                             "serve-model --max-batch` wins)"),
    "serve_max_body_mb": Limit("STUDIO_SERVE_MAX_BODY_MB", 16, "MB",
                               "bytes of one prediction request body to a served model "
                               "(`--max-body-mb` wins)", integer=False),
    "request_kb": Limit("STUDIO_MAX_REQUEST_KB", 1024, "KB",
                        "bytes of one request body to the studio other than an upload (a "
                        "job's config, a UI event's inputs), refused (413) before it is parsed",
                        integer=False),
}


class LimitError(InvalidParameterError):
    """A value is over one of the server's limits; the message names the parameter and limit."""

    def __init__(self, name: str, limit: Limit, cap: float, detail: str, value: Any) -> None:
        self.limit = limit
        self.name, self.value = name, value
        self.rule = f"at most {_fmt(cap)} {limit.unit} ({limit.env})"
        # Skip InvalidParameterError's generic wording: this message says which limit.
        super(InvalidParameterError, self).__init__(
            f"The '{name}' parameter is over the limit {limit.env}={_fmt(cap)} {limit.unit}: "
            f"{detail}. Lower it, or raise {limit.env} on the server.")


def _fmt(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:,.3g}"


def get_limit(key: str) -> float:
    """The current value of a limit (its environment variable, or its default)."""
    return LIMITS[key].value()


def check_limit(name: str, amount: float, key: str, *, detail: str | None = None,
                value: Any = None) -> None:
    """Raise LimitError naming ``name`` when ``amount`` is over the limit ``key``."""
    limit = LIMITS[key]
    cap = limit.value()
    if amount > cap:
        shown = detail or f"{_fmt(amount)} {limit.unit} asked"
        raise LimitError(name, limit, cap, shown, amount if value is None else value)


def limits_table() -> str:
    """The limits as a Markdown table (the README's "Limits" table is this text)."""
    rows = ["| variable | default | what it bounds |", "|---|---|---|"]
    for limit in LIMITS.values():
        rows.append(f"| `{limit.env}` | {_fmt(limit.default)} {limit.unit} | {limit.what} |")
    return "\n".join(rows)
