"""Text labels are coded in sorted order: the data summary, the preview and report.json say which
label each class index is, and warn when number-like labels are indexed in text order."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.data import dataset_from_spec, load_dataset, spec_inputs


def _npz(tmp_path, name, labels):
    """60 rows; feature 0 of a row is the position of its label in ``labels``."""
    rng = np.random.default_rng(0)
    where = np.arange(60) % len(labels)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    X[:, 0] = where
    path = tmp_path / f"{name}.npz"
    np.savez(path, X=X, y=np.array(labels)[where])
    return path


NUMBER_WORDS = "zero one two three four five six seven eight nine".split()


@pytest.mark.parametrize("labels, classes", [
    (NUMBER_WORDS, sorted(NUMBER_WORDS)),
    (["1", "2", "10"], ["1", "10", "2"]),
])
def test_number_like_text_labels_show_their_indices_and_warn(tmp_path, labels, classes):
    from studio.tabs.model_data import data_preview

    data = load_dataset(_npz(tmp_path, "ordinal", labels))
    summary = data.summary()
    assert summary["classes"] == classes
    # a row coded k holds the label classes[k]
    assert [labels[int(x)] for x in data.X_train[:, 0]] == [classes[k] for k in data.y_train]
    assert "sorted text order" in summary["class_order_warning"]
    assert f'0 = "{classes[0]}", 1 = "{classes[1]}"' in summary["class_order_warning"]
    spec = data.spec.to_dict()
    assert spec["classes"] == classes and spec["class_order_warning"]
    preview = data_preview(data, "label")
    assert f'0 = "{classes[0]}"' in preview and "sorted text order" in preview


@pytest.mark.parametrize("labels", [["cat", "dog"], [0, 1, 2], ["0", "1", "2"],
                                    ["one", "three"]])  # number words in numeric order
def test_other_labels_show_their_indices_without_a_warning(tmp_path, labels):
    from studio.tabs.model_data import data_preview

    data = load_dataset(_npz(tmp_path, "plain", labels))
    names = [str(v) for v in sorted(labels)]
    assert data.summary()["classes"] == names and "class_order_warning" not in data.summary()
    assert "class_order_warning" not in data.spec.to_dict()
    preview = data_preview(data, "label")
    assert f'1 = "{names[1]}"' in preview and "⚠" not in preview


def test_builtin_data_has_no_warning():
    for name in ("digits", "health"):
        summary = load_dataset(name).summary()
        assert "class_order_warning" not in summary and len(summary["classes"]) >= 4


def test_report_records_the_classes_and_replays(tmp_path):
    """A CSV with number-word labels: report.json's data entry lists index -> label and the
    warning; re-loading the data from that entry codes the rows the same way."""
    from core.runs import train_baseline

    rng = np.random.default_rng(1)
    words = np.array(["two", "one", "three"] * 30)
    frame = pd.DataFrame(rng.normal(size=(90, 3)), columns=["a", "b", "c"])
    frame["label"] = words
    csv = tmp_path / "words.csv"
    frame.to_csv(csv, index=False)
    run = tmp_path / "run"
    train_baseline("mlp", str(csv), {"epochs": 1}, out_dir=run,
                   measure_options={"budget_s": 0.02, "memory": False})
    entry = json.loads((run / "report.json").read_text())["data"]
    assert entry["classes"] == ["one", "three", "two"]
    assert '0 = "one", 1 = "three", 2 = "two"' in entry["class_order_warning"]
    again = dataset_from_spec(entry)
    first = load_dataset(csv)
    assert again.class_names == entry["classes"]
    np.testing.assert_array_equal(again.y_test, first.y_test)
    # An older report (written before classes were recorded) is the same data: the Tuning tab
    # compares its study with the current model this way.
    older = {k: v for k, v in entry.items() if k not in ("classes", "class_order_warning")}
    assert spec_inputs(older) == spec_inputs(entry)
    assert spec_inputs({**older, "source": "digits"}) != spec_inputs(entry)
