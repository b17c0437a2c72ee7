"""The deployment target: parsing, validation, the CLI options, and picks ranked at its batch."""

from __future__ import annotations

import os

import pytest

from core.errors import InvalidParameterError
from core.measure import Target


def test_target_parses_cli_text_and_resolves_all_cores():
    t = Target(batch_sizes="1, 64", threads="1,all", latency_budget_ms=5)
    assert t.batch_sizes == (1, 64) and t.threads == (1, "all")
    assert t.thread_counts == tuple(dict.fromkeys((1, os.cpu_count())))
    assert t.primary_batch == 64 and t.within_budget(4.9) and not t.within_budget(5.1)
    assert Target(threads="all").thread_counts == (os.cpu_count(),)
    assert Target.from_options({"threads": 2, "budget_s": 0.1}).to_dict()["threads"] == 2


@pytest.mark.parametrize(("fields", "name"), [
    ({"batch_sizes": "0,64"}, "batch_sizes"),
    ({"batch_sizes": "one"}, "batch_sizes"),
    ({"batch_sizes": ()}, "batch_sizes"),
    ({"threads": "two"}, "threads"),
    ({"threads": 0}, "threads"),
    ({"latency_budget_ms": -1.0}, "latency_budget_ms"),
])
def test_bad_target_is_one_clear_error(fields, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        Target(**fields)


def test_cli_refuses_a_bad_target_before_any_work(tmp_path, capsys):
    from core.cli import run

    errors: list[str] = []
    out = tmp_path / "b"
    assert run(["benchmark", "--model", "m.onnx", "--batch-sizes", "0,64", "--out", str(out)],
               err=errors.append) == 2
    assert "batch_sizes" in capsys.readouterr().err and not out.exists()
    assert run(["auto", "--latency-budget-ms", "-3", "--out", str(out)],
               err=errors.append) == 2
    assert "latency_budget_ms" in errors[-1] and not out.exists()


def test_cli_builds_only_the_named_verbs_area():
    import argparse
    import importlib

    from core.cli import AREA_CLIS, VERB_AREAS, build_parser

    sub_of = lambda p: next(a for a in p._actions  # noqa: E731
                            if isinstance(a, argparse._SubParsersAction))
    assert "quantize" in sub_of(build_parser(["quantize"])).choices
    assert "distill" not in sub_of(build_parser(["quantize"])).choices
    assert "distill" in sub_of(build_parser(["--help"])).choices  # --help lists every verb
    for module in AREA_CLIS:  # the verb map says truly which module adds each verb (a verb
        sub = argparse.ArgumentParser().add_subparsers()  # not in it builds every area)
        importlib.import_module(module).add_parser(sub)
        assert {VERB_AREAS.get(v, module) for v in sub.choices} == {module}


def _row(name, p50_b1, p50_b64, size=1000, val=0.95):
    return {"name": name, "ok": True, "val_drop": 0.95 - val, "val_accuracy": val,
            "accuracy": val, "size_bytes": size, "p50_b1": p50_b1, "p50_b64": p50_b64,
            "speedup_b1": 1 / p50_b1, "speedup_b64": 10 / p50_b64, "size_reduction": 1.0,
            "accuracy_delta": 0.0, "steps": None}


def test_the_pick_is_ranked_at_the_target_batch_size():
    from core.auto import choose, pick_per_batch
    from core.auto._auto import _decide

    # ORT INT8 wins at batch 1, torch INT8 at batch 64 (as measured in issue 18).
    rows = [_row("baseline", 2.0, 40.0), _row("ort-int8", 0.6, 28.0, size=300),
            _row("torch-int8", 1.4, 12.0, size=300)]
    assert choose(rows, "speed", 0.01, batch_size=1)["name"] == "ort-int8"
    assert choose(rows, "speed", 0.01, batch_size=64)["name"] == "torch-int8"
    picks = pick_per_batch(rows, "speed", 0.01, Target(batch_sizes=(1, 64)))
    assert {bs: p["winner"] for bs, p in picks.items()} == {"1": "ort-int8", "64": "torch-int8"}
    assert "0.600 ms" in picks["1"]["why"] and "torch-int8" in picks["1"]["why"]
    win, text, _ = _decide(rows, [], "speed", 0.01, Target(batch_sizes=(1,)))
    assert win["name"] == "ort-int8"
    win, text, _ = _decide(rows, [], "speed", 0.01, Target(batch_sizes=(1, 64)))
    assert win["name"] == "torch-int8" and "ort-int8" in text  # the other pick is named


def test_the_latency_budget_limits_the_pick():
    from core.auto import choose

    rows = [_row("baseline", 2.0, 40.0), _row("small-slow", 1.9, 30.0, size=100),
            _row("big-fast", 0.5, 9.0, size=900)]
    assert choose(rows, "size", 0.01)["name"] == "small-slow"
    assert choose(rows, "size", 0.01, latency_budget_ms=10.0)["name"] == "big-fast"
    # No variant within the budget: the pick is still made (the report says so).
    assert choose(rows, "size", 0.01, latency_budget_ms=0.1)["name"] == "small-slow"


def test_macs_leave_out_zero_padding_taps(tmp_path):
    import torch

    from core.measure import onnx_macs, torch_macs

    # A 3x3 conv on a 1x1 map: one real tap per output (8 outputs x 4 inputs), not nine.
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3)).eval()
    x = torch.randn(1, 4, 1, 1)
    assert torch_macs(model, x) == 8 * 4 * 1 + 8 * 3
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    assert onnx_macs(path) == 8 * 4 * 1 + 8 * 3
    # Stride 2 over 32x32 with padding 1: only the first row/column touches padding.
    conv = torch.nn.Conv2d(3, 16, 3, padding=1, stride=2)
    assert torch_macs(conv, torch.randn(1, 3, 32, 32)) == 16 * 3 * (16 * 3 - 1) ** 2


def test_numpy_split_is_stratified_and_replays_old_reports():
    import numpy as np

    from core.data import dataset_from_spec, load_dataset

    data = load_dataset("digits", seed=3)
    every = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test]))
    share = np.bincount(data.y_test) / every  # each class in proportion to its size
    assert np.all(np.abs(share - 0.2) < 1.0 / every) and data.spec.splitter == "numpy"
    again = dataset_from_spec(data.spec.to_dict())
    assert np.array_equal(again.y_test, data.y_test)
    old = {k: v for k, v in data.spec.to_dict().items() if k != "splitter"}
    assert dataset_from_spec(old).spec.splitter == "sklearn"
