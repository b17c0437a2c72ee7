"""A practitioner's walkthrough of the CLI and REST summaries with their own ONNX export, as
the README tells it: each test is a step that once failed or misled."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import run
from tests.conftest import FAST_MEASURE
from tests.helpers import onnx_zoo as zoo

FAST_CLI = ["--batch-sizes", "1,64"]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, digits) -> Path:
    """A user's folder: torch 2.13's default export of a small trained net (model.onnx +
    model.onnx.data, batch fixed at 1), written where they then run the studio."""
    import torch

    root = tmp_path_factory.mktemp("my_model")
    net = zoo.train_tiny(zoo.tiny_net(), digits.X_train, digits.y_train, epochs=3)
    zoo.export_default(net, root / "model.onnx", torch.from_numpy(digits.X_train[:1]))
    assert (root / "model.onnx.data").is_file()
    return root


def test_an_export_benchmarked_from_its_own_folder_is_made_dynamic(export_dir, digits,
                                                                  monkeypatch, capsys):
    # onnx's save looked for "model.onnx.data" in the current folder, so run beside the
    # export the batch stayed fixed at 1 ("could not be made dynamic safely") and b64 was lost
    monkeypatch.chdir(export_dir)
    code = run(["benchmark", "--model", "model.onnx", "--data", "digits", "--out", "bench",
                *FAST_CLI])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((export_dir / "bench" / "report.json").read_text())
    assert report["onnx"]["batch_made_dynamic"], report["warnings"]
    assert set(report["result"]["latency_ms"]) == {"1", "64"}
    X, y = digits.split("test")
    assert report["result"]["accuracy"] == pytest.approx(
        zoo.ort_accuracy(export_dir / "bench", X, y), abs=1e-3)
    shipped = sum(p.stat().st_size for p in (export_dir / "bench").glob("model.onnx*"))
    assert report["result"]["size_bytes"] == shipped
    # the summary says what was timed, and where
    assert report["result"]["extra"]["timed_with"] == "onnxruntime"
    assert re.search(r"^timed: onnxruntime, 1 thread\(s\), \S", out, re.M), out


@pytest.fixture(scope="module")
def fixed_batch_run(tmp_path_factory, digits) -> Path:
    """A run folder of a model whose batch must stay fixed (at 4): no batch-64 figures."""
    from core.runs import benchmark_model

    root = tmp_path_factory.mktemp("fixed")
    model = zoo.batch_dependent_onnx(digits.X_train, digits.y_train, root / "bound.onnx",
                                     num_classes=10)
    benchmark_model(model, digits, out_dir=root / "bench", measure_options=FAST_MEASURE)
    return root / "bench"


def test_compare_prints_a_model_timed_at_its_fixed_batch_only(fixed_batch_run, tmp_path,
                                                              capsys):
    # the table formatted p50 at batch 64 unconditionally: None -> "internal error: TypeError"
    # after report.json was written, exit 1
    code = run(["compare", str(fixed_batch_run), "--out", str(tmp_path / "cmp"),
                "--budget", "0.02", "--no-memory"])
    out = capsys.readouterr().out
    assert code == 0, out
    row = next(line for line in out.splitlines() if "bench" in line)
    assert "p50 b4 " in row and "b64" not in row


def test_a_rest_job_summary_shows_the_batch_it_was_timed_at_and_the_warnings(fixed_batch_run):
    from core.jobs import summarize

    # the summary gave p50_b64_ms only: null for a fixed-batch model, with no warning
    report = json.loads((fixed_batch_run / "report.json").read_text())
    summary = summarize(report)
    assert summary["p50_ms"] == {"4": report["result"]["latency_ms"]["4"]["p50"]}
    assert summary["p50_ms"]["4"] > 0 and summary["threads"] == 1
    assert any("could not be made dynamic" in w for w in summary["warnings"])


def test_quantize_help_names_the_model_files_each_method_family_takes():
    import argparse

    from core.cli import build_parser
    from core.quantization._check import CLI_KIND_NAMES, check_applies

    # the help said torch-* "need the eager model (a built-in run folder)"; they take an
    # .onnx too (converted to torch), as the README says
    verbs = next(a for a in build_parser(["quantize"])._actions
                 if isinstance(a, argparse._SubParsersAction)).choices
    action = next(a for a in verbs["quantize"]._actions if a.dest == "method")
    text = " ".join(action.help.split())
    for family, method in (("ort-*", "ort-static-int8"), ("torch-*", "torch-static-int8")):
        named = re.search(rf"{re.escape(family)} take (.+?)(;|\(|$)", text).group(1)
        for kind, words in CLI_KIND_NAMES.items():
            try:
                check_applies(method, kind)
                accepted = True
            except Exception:
                accepted = False
            assert (words in named) == accepted, (family, kind, text)


def test_a_reader_that_leaves_early_is_not_an_internal_error(tmp_path):
    # `studio methods | head -1`: the closed pipe was "internal error: BrokenPipeError"
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "core.cli", "methods"], stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    os.close(write)
    assert "internal error" not in proc.stderr, proc.stderr
    assert proc.returncode == 1


def test_pruning_an_onnx_export_says_it_was_timed_in_torch(export_dir, digits, tmp_path):
    from core.pruning import prune

    # the baseline read 0.32 ms in the prune report and 0.031 ms in the benchmark of the same
    # model.onnx: prune times the converted torch modules, and nothing said so
    report = prune(export_dir / "model.onnx", digits, "structured-l2", sparsity=0.5,
                   finetune_epochs=0, out_dir=tmp_path / "p", measure_options=FAST_MEASURE
                   ).report
    assert report["baseline"]["extra"]["timed_with"] == "torch"
    assert report["result"]["extra"]["timed_with"] == "torch"
    assert any(w.startswith("Timed in torch") and "studio compare" in w
               for w in report["warnings"]), report["warnings"]


def test_the_bundles_recipe_replays_with_studio_run(export_dir, digits, tmp_path, monkeypatch):
    import zipfile

    from core.artifacts import make_bundle
    from core.quantization import quantize
    from core.runs import benchmark_model

    # the README says the bundle's recipe.yaml "reproduces it with studio run"; it held the
    # step's config, which studio run refused ("The 'config' parameter must be one of the
    # recipe keys")
    monkeypatch.chdir(export_dir)  # the user's folder: model.onnx (+ .data) by name
    bench = benchmark_model("model.onnx", digits, out_dir=tmp_path / "b",
                            measure_options=FAST_MEASURE)
    made = quantize(bench.run_dir, None, "ort-dynamic-int8", out_dir=tmp_path / "q",
                    measure_options=FAST_MEASURE).report
    with zipfile.ZipFile(make_bundle(tmp_path / "q", tmp_path / "q.zip")) as zf:
        (tmp_path / "recipe.yaml").write_bytes(zf.read("recipe.yaml"))
        card = zf.read("MODEL_CARD.md").decode()
    # the card's ratios said neither against what nor whether faster, nor what was timed
    verdicts = made["speed_verdicts"]
    assert f"| speedup_b1 | {made['ratios']['speedup_b1']:.3f} ({verdicts['speedup_b1']}) |" \
        in card
    assert "timed with onnxruntime" in card and "against the baseline, `b`," in card
    assert str(tmp_path) not in (tmp_path / "recipe.yaml").read_text()  # names, no paths
    code = run(["run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "again"),
                "--batch-sizes", "1"])
    assert code == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["result"]["accuracy"] == pytest.approx(made["result"]["accuracy"], abs=1e-9)


def test_a_size_gain_that_is_mostly_dropped_debug_records_says_so(tmp_path):
    import torch

    from core.quantization import quantize
    from tests.helpers.zoo import digits_3x32, resnet_like

    # ort-int4 on a ResNet-style export (convolutions stay FP32) reported 1.28x smaller:
    # 52,172 of the 53,011 bytes saved were the exporter's debug records the studio drops
    data = digits_3x32(size=8)
    torch.manual_seed(0)
    zoo.export_default(resnet_like(widths=(4, 8)).eval(), tmp_path / "model.onnx",
                       torch.from_numpy(data.X_train[:1]))
    report = quantize(tmp_path / "model.onnx", data, "ort-int4", out_dir=tmp_path / "q",
                      measure_options=FAST_MEASURE).report
    removed = report["quantization"]["debug_metadata_bytes_removed"]
    saved = report["baseline"]["size_bytes"] - report["result"]["size_bytes"]
    assert removed >= saved / 4 > 0  # this model is such a case
    assert any(f"{removed:,} of the {saved:,} bytes" in w for w in report["warnings"]), \
        report["warnings"]


def test_compare_sizes_a_run_by_its_shipped_files(export_dir, digits, tmp_path, monkeypatch):
    from core.compare import compare
    from core.runs import benchmark_model

    # a run folder whose model.onnx ships at a fixed batch (as every default export did when
    # run from its own folder) is loaded through a batch-dynamic copy; compare sized it by
    # the copy (a ResNet-style INT8 file: 81,519 bytes in compare, 82,772 on disk)
    monkeypatch.setattr("core.artifacts._onnx.dynamic_batch_copy",
                        lambda path, batch, **_: None)
    benchmark_model(export_dir / "model.onnx", digits, out_dir=tmp_path / "b",
                    measure_options=FAST_MEASURE)
    monkeypatch.undo()
    row = compare([tmp_path / "b"], out_dir=tmp_path / "c",
                  measure_options=FAST_MEASURE).report["rows"][0]
    assert row["p50_b64"] is not None  # timed through the dynamic copy
    assert row["size_bytes"] == sum(p.stat().st_size for p in (tmp_path / "b").glob("model.onnx*"))


def test_an_error_making_the_batch_dynamic_is_named_not_called_unsafe(export_dir, digits,
                                                                     tmp_path, monkeypatch):
    from core.runs import benchmark_model

    # the CWD bug above read as "could not be made dynamic safely": any error on the way was
    # swallowed into the words of a failed verification
    def broken(*args, **kwargs):
        raise RuntimeError("External data file exists in model.onnx.data.")

    monkeypatch.setattr("core.artifacts._onnx._reshape_batch_free", broken)
    report = benchmark_model(export_dir / "model.onnx", digits, out_dir=tmp_path / "b",
                             measure_options=FAST_MEASURE).report
    note = next(w for w in report["warnings"] if "batch dimension" in w)
    assert "making it dynamic failed (RuntimeError: External data file exists" in note, note
    assert list(report["result"]["latency_ms"]) == ["1"]
