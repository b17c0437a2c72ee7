"""--json prints one JSON object with report.json's figures; --config files; a user's model
file without --data is refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import run
from tests.helpers.seed import quick_measurement

FIGURES = ("operation", "method", "baseline", "result", "ratios", "warnings", "config")


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    quick_measurement(monkeypatch)


def _json_run(args: list[str], capsys) -> tuple[int, dict, str]:
    """Run with --json; (exit code, the one JSON object on stdout, stderr)."""
    code = run([*args, "--json"])
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, captured.out  # one object, nothing else on stdout
    return code, json.loads(lines[0]), captured.err


def _assert_is_report(obj: dict, out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    assert obj["ok"] is True and Path(obj["report"]) == out / "report.json"
    for key in FIGURES:
        assert obj[key] == report[key], key


def test_train_json_is_the_report_and_model_kwargs_set_widths(tmp_path, capsys):
    out = tmp_path / "base"
    code, obj, err = _json_run(["train", "--model", "cnn", "--model-kwargs", "channels=4,8",
                                "--epochs", "1", "--out", str(out)], capsys)
    assert code == 0, err
    _assert_is_report(obj, out)
    assert obj["config"]["model_kwargs"]["channels"] == [4, 8]
    assert obj["result"]["accuracy"] > 0.1 and "report:" in err  # the human summary: stderr


def test_benchmark_and_quantize_json_match_their_reports(baseline_dir, tmp_path, capsys):
    out = tmp_path / "bench"  # a run folder without --data: its own data
    code, obj, err = _json_run(["benchmark", "--model", str(baseline_dir), "--out", str(out)],
                               capsys)
    assert code == 0, err
    _assert_is_report(obj, out)
    assert obj["result"]["size_bytes"] > 0
    out = tmp_path / "q8"
    code, obj, err = _json_run(["quantize", "--model", str(baseline_dir), "--method",
                                "ort-dynamic-int8", "--out", str(out)], capsys)
    assert code == 0, err
    _assert_is_report(obj, out)
    assert obj["method"] == "ort-dynamic-int8" and obj["ratios"]["size_reduction"] > 0


def test_config_file_gives_options_and_flags_win(tmp_path, capsys):
    out = tmp_path / "mlp"
    config = tmp_path / "train.yaml"
    config.write_text(f"model: mlp\ndata: wine\nepochs: 1\nseed: 1\nbatch_size: 16\n"
                      f"model_kwargs: {{hidden_dims: [8]}}\nout: {out}\n")
    code, obj, err = _json_run(["train", "--config", str(config), "--seed", "3"], capsys)
    assert code == 0, err
    _assert_is_report(obj, out)
    assert obj["seed"] == 3 and obj["config"]["batch_size"] == 16  # flag wins; file applies
    assert obj["config"]["model"] == "mlp" and obj["config"]["model_kwargs"]["hidden_dims"] == [8]


def test_config_file_unknown_key_is_one_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 1\nepoch_count: 3\n")
    errors: list[str] = []
    out = tmp_path / "never"
    assert run(["train", "--config", str(config), "--out", str(out)], err=errors.append) == 2
    assert len(errors) == 1 and "'epoch_count'" in errors[0] and "'config'" in errors[0]
    code, obj, _ = _json_run(["train", "--config", str(config), "--out", str(out)], capsys)
    assert code == 2 and obj["ok"] is False and "epoch_count" in obj["error"]["message"]
    assert obj["error"]["exit_code"] == 2 and not out.exists()


def test_a_wrong_model_kwarg_is_refused_before_training(tmp_path):
    errors: list[str] = []
    out = tmp_path / "never"
    code = run(["train", "--model-kwargs", "chanels=8,16", "--out", str(out)],
               err=errors.append)
    assert code == 2 and len(errors) == 1 and "chanels" in errors[0], errors
    widths = tmp_path / "widths.yaml"
    widths.write_text("channels: [4, 8]\nkernel: 5\n")
    code = run(["train", "--model-config", str(widths), "--out", str(out)], err=errors.append)
    assert code == 2 and len(errors) == 2 and "kernel" in errors[1], errors
    assert not out.exists()


def test_a_user_model_file_without_data_is_refused_before_any_work(baseline_dir, tmp_path,
                                                                   capsys):
    onnx = baseline_dir / "model.onnx"
    for args in (["benchmark", "--model", str(onnx)],
                 ["quantize", "--model", str(onnx), "--method", "ort-dynamic-int8"],
                 ["distill", "--teacher", str(onnx)],
                 ["prune", "--model", str(tmp_path / "net.pt2")]):
        errors: list[str] = []
        out = tmp_path / "never"
        assert run([*args, "--out", str(out)], err=errors.append) == 2, args
        assert len(errors) == 1 and "'data'" in errors[0], errors
        assert Path(args[2]).name in errors[0] and str(tmp_path) not in errors[0]
        assert not out.exists()
    code, obj, _ = _json_run(["benchmark", "--model", str(onnx), "--out", str(out)], capsys)
    assert code == 2 and obj["error"]["type"] == "InvalidParameterError"


def test_a_usage_error_with_json_is_a_json_error(capsys):
    code, obj, err = _json_run(["train", "--epochs", "many", "--out", "x"], capsys)
    assert code == 2 and obj["ok"] is False and "--epochs" in obj["error"]["message"]
    assert "usage:" in err


@pytest.mark.parametrize("verb", [
    ["prune", "--method", "l1-unstructured", "--sparsity", "0.5", "--finetune-epochs", "1"],
    ["profile", "--runs", "5"],
    ["fuse"],
    ["factorize", "--rank-ratio", "0.5", "--finetune-epochs", "1"],
])
def test_each_model_verb_json_matches_its_report(verb, baseline_dir, tmp_path, capsys):
    out = tmp_path / verb[0]
    code, obj, err = _json_run([verb[0], "--model", str(baseline_dir), *verb[1:],
                                "--out", str(out)], capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert obj["ok"] is True and Path(obj["report"]) == out / "report.json"
    for key in FIGURES:
        assert obj.get(key) == report.get(key), key
