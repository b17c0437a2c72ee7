"""core.continual: the accuracy-matrix figures, a tiny measured run, tasks, replay, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.continual import (
    ContinualConfig,
    ReplayBuffer,
    average_accuracy,
    backward_transfer,
    forgetting,
    permuted_digits,
    split_digits,
    tasks_from_files,
    tasks_from_label_columns,
)
from core.errors import InvalidParameterError
from tests.helpers.seed import quick_measurement


def test_metric_definitions_on_a_hand_matrix():
    # R[i][j]: accuracy on task j after task i. Task 0 first improves (0.5 -> 0.9), then drops.
    R = [[0.5, None, None], [0.9, 0.8, None], [0.6, 0.7, 0.9]]
    assert average_accuracy(R) == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.5) + (0.7 - 0.8)) / 2)  # 0.0
    assert forgetting(R) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.7)) / 2)  # from the best
    assert forgetting(R[:1]) is None and backward_transfer(R[:1]) is None
    with pytest.raises(InvalidParameterError, match="accuracy matrix"):
        average_accuracy([[0.5, None], [None, 0.7]])


def test_tiny_run_writes_the_accuracy_matrix_and_measured_tasks(tmp_path, monkeypatch):
    from core.cli import run

    quick_measurement(monkeypatch)
    out = tmp_path / "cl"
    code = run(["continual", "--model", "mlp", "--n-tasks", "2", "--epochs", "1",
                "--replay-size", "30", "--prune", "structured-l2", "--sparsity", "0.5",
                "--finetune-epochs", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    cont = report["continual"]
    R = cont["accuracy_matrix"]
    assert len(R) == 2 and all(len(row) == 2 for row in R) and R[0][1] is None
    assert cont["average_accuracy"] == pytest.approx(average_accuracy(R))
    assert cont["forgetting"] == pytest.approx(R[0][0] - R[1][0])
    assert cont["backward_transfer"] == pytest.approx(R[1][0] - R[0][0])
    rows = cont["tasks"]
    assert [r["replay_rows"] for r in rows] == [0, 30]
    for r in rows:  # size = the task's deployable artifact, on disk
        onnx = out / "tasks" / f"task_{r['task']}" / "model.onnx"
        assert r["size_bytes"] == onnx.stat().st_size
        assert r["latency_ms"]["1"]["p50"] > 0
    assert rows[1]["nonzero_params"] < rows[0]["nonzero_params"]  # sparsity grew over tasks
    assert rows[1]["size_bytes"] < rows[0]["size_bytes"]  # channels really removed
    assert report["operation"] == "continual" and report["result"]["size_bytes"] > 0
    assert (out / "tasks.csv").read_text().count("\n") == 3


def test_split_and_permuted_digits_sequences():
    split = split_digits(5)
    assert [t["classes"] for t in split.summary()] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert all(t.num_classes == 10 for t in split.tasks)
    perm = permuted_digits(3)
    a, b = perm.tasks[0], perm.tasks[1]
    assert np.array_equal(a.y_test, b.y_test) and not np.array_equal(a.X_test, b.X_test)
    assert np.allclose(np.sort(a.X_test.reshape(len(a.X_test), -1), axis=1),
                       np.sort(b.X_test.reshape(len(b.X_test), -1), axis=1))  # same pixels


def test_user_data_label_columns_and_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    csv = tmp_path / "multi.csv"
    lines = ["a,b,c,d,kind,size"] + [
        f"{x[0]},{x[1]},{x[2]},{x[3]},{'cat' if x[0] > 0 else 'dog'},{int(x[1] > 0) + 5}"
        for x in X]
    csv.write_text("\n".join(lines) + "\n")
    seq = tasks_from_label_columns(csv, ("kind", "size"))
    assert seq.class_names == ["kind=cat", "kind=dog", "size=5", "size=6"]
    assert set(seq.tasks[1].y_train) == {2, 3} and seq.tasks[0].input_shape == (4,)
    files = []
    for i, labels in enumerate((["x", "y"], ["y", "z"])):
        path = tmp_path / f"t{i}.npz"
        np.savez(path, X=rng.normal(size=(40, 3)), y=np.array(labels * 20))
        files.append(path)
    seq = tasks_from_files(files)
    assert seq.class_names == ["x", "y", "z"]
    assert set(seq.tasks[1].y_train) == {1, 2}  # 'y' is the same class in both files


def test_replay_buffer_is_a_bounded_reservoir():
    buf = ReplayBuffer(50, seed=0)
    buf.add(np.zeros((400, 2), np.float32), np.zeros(400, np.int64))
    buf.add(np.ones((400, 2), np.float32), np.ones(400, np.int64))
    X, y = buf.arrays()
    assert len(buf) == 50 and buf.seen == 800 and set(buf.counts()) == {"0", "1"}
    assert np.array_equal(X[:, 0], y.astype(np.float32))  # rows kept whole
    assert ReplayBuffer(0).arrays() is None


@pytest.mark.parametrize("kwargs, name", [
    ({"replay_size": -1}, "replay_size"),
    ({"sequence": "rotated-mnist"}, "sequence"),
    ({"n_tasks": 11}, "n_tasks"),
    ({"prune": "movement"}, "prune"),
    ({"quantize": "int3"}, "quantize"),
    ({"sparsity": 1.5}, "sparsity"),
    ({"sequence": "label-columns", "data": "x.csv", "label_columns": "a"}, "label_columns"),
    ({"sequence": "files", "files": ["one.csv"]}, "files"),
    ({"model": "resnet"}, "model"),
])
def test_bad_configs_give_one_clear_error(kwargs, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}'"):
        ContinualConfig(**kwargs)


def test_cli_bad_value_exits_2_naming_the_parameter(tmp_path):
    from core.cli import run

    errors: list[str] = []
    code = run(["continual", "--replay-size", "-5", "--out", str(tmp_path / "x")],
               err=errors.append)
    assert code == 2 and "replay_size" in errors[0] and not (tmp_path / "x").exists()


def test_rest_job_kind_validates_before_queueing():
    from core.jobs import KINDS

    kind = KINDS["continual"]
    assert kind.validate({"config": {"n_tasks": 3}}, None)["config"]["n_tasks"] == 3
    with pytest.raises(InvalidParameterError, match="'sequence'"):  # no server paths in a job
        kind.validate({"config": {"sequence": "files", "files": ["a.csv", "b.csv"]}}, None)
    with pytest.raises(InvalidParameterError, match="'replay_size'"):
        kind.validate({"config": {"replay_size": -1}}, None)


def test_a_task_file_with_one_class_is_named_in_the_error(tmp_path):
    """'needs at least 10 rows and 2 classes; got 80 rows and 1 classes' did not say which of
    the --files it was: the message names it (base name only) and nothing is written."""
    from core.cli import run

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", X=rng.normal(size=(80, 3)), y=np.array([0, 1] * 40))
    np.savez(tmp_path / "one_class.npz", X=rng.normal(size=(80, 3)), y=np.zeros(80, int))
    errors: list[str] = []
    files = ",".join(str(tmp_path / n) for n in ("a.npz", "one_class.npz"))
    code = run(["continual", "--files", files, "--out", str(tmp_path / "x")],
               err=errors.append)
    assert code != 0 and not (tmp_path / "x").exists()
    assert "'one_class.npz' needs at least 10 rows and 2 classes" in errors[0], errors
    assert str(tmp_path) not in errors[0]
