"""Data goes in as the user gave it (issue 13): no preprocessing of a user's .npz/.csv unless
asked (``normalize=True`` / ``--normalize``); what was applied is in report.json and is applied
the same way when a later verb re-loads the data from the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

FAST = {"budget_s": 0.02, "memory": False}


@pytest.fixture(scope="module")
def raw_digits(tmp_path_factory):
    """Digits as raw, offset pixel values (50 + 3 × 0..16): far from zero mean, unit std."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (50.0 + 3.0 * d.data).reshape(-1, 1, 8, 8).astype(np.float32)
    path = tmp_path_factory.mktemp("user") / "raw.npz"
    np.savez(path, X=X, y=d.target)
    return path, X, d.target


class NormalizeInside(nn.Module):
    """The user's model: it standardizes its own input with fixed statistics, then classifies."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@pytest.fixture(scope="module")
def user_onnx(raw_digits, tmp_path_factory):
    """The user's model, trained by hand on their raw rows and exported to ONNX."""
    _, X, y = raw_digits
    torch.manual_seed(0)
    model = NormalizeInside(float(X.mean()), float(X.std()))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("model") / "user.onnx"
    torch.onnx.export(model, (Xt[:1],), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}})
    return path, model


def _rows_of(X_split: np.ndarray, X_file: np.ndarray) -> np.ndarray:
    """Index in the file of each split row (asserts every split row is a file row, as given)."""
    index = {row.tobytes(): i for i, row in enumerate(X_file.reshape(len(X_file), -1))}
    flat = np.ascontiguousarray(X_split.reshape(len(X_split), -1), dtype=np.float32)
    found = [index.get(row.tobytes()) for row in flat]
    assert None not in found, "a split row is not one of the file's rows"
    return np.array(found)


def test_user_npz_is_used_as_given_and_normalize_is_recorded(raw_digits):
    from core.data import dataset_from_spec, load_dataset

    path, X, y = raw_digits
    raw = load_dataset(path)
    assert raw.preprocessing == {"type": "none"} and raw.spec.to_dict()["normalize"] is False
    rows = _rows_of(raw.X_test, X)
    np.testing.assert_array_equal(raw.y_test, y[rows])
    norm = load_dataset(path, normalize=True)
    assert norm.preprocessing["type"] == "standardize"
    assert abs(float(norm.X_train.mean())) < 1e-4 and abs(float(norm.X_train.std()) - 1) < 1e-3
    for ds in (raw, norm):  # re-loaded from what a report records: the same arrays
        again = dataset_from_spec(json.loads(json.dumps(ds.spec.to_dict())))
        np.testing.assert_array_equal(again.X_test, ds.X_test)
        assert again.preprocessing == ds.preprocessing


def test_recorded_preprocessing_is_replayed_not_refitted(raw_digits):
    from core.data import load_dataset

    path, X, _ = raw_digits
    recorded = {"type": "standardize", "mean": [10.0], "std": [2.0]}
    ds = load_dataset(path, preprocessing=recorded)
    rows = _rows_of((ds.X_test * 2.0 + 10.0).round(3), X)  # exactly (x - 10) / 2
    assert len(rows) == len(ds.X_test) and ds.preprocessing == recorded


def test_builtin_data_sets_keep_their_scaling():
    from core.data import dataset_from_spec, load_dataset

    digits = load_dataset("digits", normalize=True)  # built-ins keep their recorded scaling
    assert digits.preprocessing == {"type": "scale", "factor": 1 / 16}
    assert float(digits.X_train.max()) == 1.0
    wine = load_dataset("wine")
    assert wine.preprocessing["type"] == "standardize" and len(wine.preprocessing["mean"]) == 13
    np.testing.assert_array_equal(dataset_from_spec(wine.spec.to_dict()).X_val, wine.X_val)


def test_legacy_report_of_user_data_is_standardized_as_it_was(raw_digits):
    from core.data import dataset_from_spec

    path, _, _ = raw_digits
    legacy = {"source": str(path), "label_column": "label", "seed": 0, "test_fraction": 0.2,
              "val_fraction": 0.15}  # written before 'preprocessing' was recorded
    assert dataset_from_spec(legacy).preprocessing["type"] == "standardize"


def test_model_with_normalization_inside_is_measured_truthfully(raw_digits, user_onnx,
                                                                tmp_path):
    from core.data import load_dataset
    from core.runs import benchmark_model

    path, X, y = raw_digits
    onnx_path, model = user_onnx
    report = benchmark_model(onnx_path, load_dataset(path), out_dir=tmp_path / "bench",
                             measure_options=FAST).report
    assert report["data"]["preprocessing"] == {"type": "none"}
    saved = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert saved["data"]["preprocessing"] == {"type": "none"}
    # Independent check: the report's test rows are file rows; score them with torch.
    test = load_dataset(path)
    rows = _rows_of(test.X_test, X)
    with torch.no_grad():
        pred = model(torch.from_numpy(X[rows])).argmax(1).numpy()
    independent = float((pred == y[rows]).mean())
    assert independent > 0.9
    assert report["result"]["accuracy"] == pytest.approx(independent, abs=1e-9)


def test_cli_normalize_flag_is_applied_and_reported(raw_digits, user_onnx, tmp_path):
    from core.cli import run

    path, _, _ = raw_digits
    onnx_path, _ = user_onnx
    messages: list[str] = []
    code = run(["benchmark", "--model", str(onnx_path), "--data", str(path), "--normalize",
                "--out", str(tmp_path / "norm")], err=messages.append)
    assert code == 0, messages
    report = json.loads((tmp_path / "norm" / "report.json").read_text())
    assert report["data"]["normalize"] is True
    assert report["data"]["preprocessing"]["type"] == "standardize"
    # Standardized twice (by the studio, then inside the model): the model is misled, and the
    # report says what was applied.
    assert report["result"]["accuracy"] < 0.5
