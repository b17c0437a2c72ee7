"""One ``open_input()``: every verb answers the same bad input with the same error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.errors import (
    InvalidParameterError,
    ModelFileError,
    StudioError,
    UnsupportedModelError,
)
from core.inputs import open_input


def _verbs(tmp_path):
    """Each verb as ``call(model, data)``, stopped by its input before any work."""
    from core.distillation import DistillConfig, distill
    from core.federated import ScaleConfig, scale
    from core.profiling import profile
    from core.pruning import prune
    from core.quantization import quantize
    from core.tuning import TuneConfig, tune

    out = tmp_path / "out"
    return {
        "quantize": lambda m, d: quantize(m, d, "ort-dynamic-int8", out_dir=out),
        "prune": lambda m, d: prune(m, d, "l1-unstructured", out_dir=out),
        "distill": lambda m, d: distill(m, d, DistillConfig(epochs=1), out_dir=out),
        "profile": lambda m, d: profile(m, d, runs=3, warmup=0),
        "tune": lambda m, d: tune(m, d, TuneConfig(n_trials=1), out_dir=out),
        "scale": lambda m, d: scale(m, d, ScaleConfig(client_counts=(2,), rounds=1),
                                    out_dir=out),
    }


def _error(call, *args) -> StudioError:
    with pytest.raises(StudioError) as info:
        call(*args)
    return info.value


@pytest.fixture(scope="module")
def onnx_file(baseline_dir, tmp_path_factory):
    """The baseline's model.onnx (and its external data) as a lone file, outside its run."""
    folder = tmp_path_factory.mktemp("lone")
    for f in baseline_dir.glob("model.onnx*"):
        shutil.copyfile(f, folder / f.name)
    return folder / "model.onnx"


def test_a_model_file_without_data_gets_one_error_from_every_verb(onnx_file, tmp_path):
    from core.runs import benchmark_model

    verbs = {**_verbs(tmp_path),  # benchmark too: no silent built-in data for a user's file
             "benchmark": lambda m, d: benchmark_model(m, d, out_dir=tmp_path / "out")}
    errors = {name: _error(call, onnx_file, None) for name, call in verbs.items()}
    messages = {str(e) for e in errors.values()}
    assert len(messages) == 1, errors
    assert all(isinstance(e, InvalidParameterError) and e.name == "data"
               for e in errors.values())
    assert str(tmp_path) not in messages.pop()
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_shape_mismatch_gets_one_rule_from_every_verb(baseline_dir, tmp_path):
    from core.runs import benchmark_model

    verbs = {**_verbs(tmp_path),
             "benchmark": lambda m, d: benchmark_model(m, d, out_dir=tmp_path / "b")}
    errors = {name: _error(call, baseline_dir, "wine") for name, call in verbs.items()}
    assert all(isinstance(e, InvalidParameterError) for e in errors.values()), errors
    rules = {(e.rule, tuple(e.value)) for e in errors.values()}
    assert rules == {("equal to the data's [13]", (1, 8, 8))}, errors
    # the teacher is named as such; every other verb names the model
    assert errors.pop("distill").name == "teacher input shape"
    assert {e.name for e in errors.values()} == {"model input shape"}


def test_an_unsupported_object_is_refused_as_the_model(tmp_path):
    verbs = _verbs(tmp_path)
    errors = {name: _error(verbs[name], object(), "digits")
              for name in ("quantize", "prune", "profile", "tune")}
    assert {(e.name, e.value) for e in errors.values()} == {("model", "object")}, errors
    assert _error(verbs["distill"], None, "digits").name == "teacher"


def test_a_run_folder_uses_its_recorded_data_unless_data_is_given(baseline_dir):
    from core.data import load_dataset
    from core.runs import data_from_report

    recorded = data_from_report(open_input(baseline_dir).report)
    run = open_input(baseline_dir)
    assert run.run_id == baseline_dir.name and run.kind == "builtin"
    assert np.array_equal(run.data.X_test, recorded.X_test)
    # the recorded source by name: the same rows; another split seed: other rows
    assert np.array_equal(open_input(baseline_dir, "digits").data.y_val, recorded.y_val)
    other = open_input(baseline_dir, "digits", seed=7).data
    assert not np.array_equal(other.y_val, recorded.y_val)
    given = load_dataset("digits", seed=3)
    assert open_input(baseline_dir, given).data is given
    assert [f.name for f in run.files] == ["model.safetensors"]


def test_a_model_file_opens_with_its_files_and_checks_its_shape(onnx_file, digits):
    inp = open_input(onnx_file, digits)
    assert inp.kind == "onnx" and inp.run_id is None and inp.report is None
    assert inp.files[0] == onnx_file  # the file as given is the baseline artifact
    assert inp.data is digits
    with pytest.raises(ModelFileError, match="'missing.onnx'") as info:
        open_input(onnx_file.parent / "missing.onnx", digits)
    assert str(onnx_file.parent) not in str(info.value)


def test_data_in_any_accepted_form_and_nothing_else(digits):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from core.models import model_for_data

    net = model_for_data("mlp", digits.input_shape, digits.num_classes)
    loader = DataLoader(TensorDataset(torch.from_numpy(digits.X_test),
                                      torch.from_numpy(digits.y_test)), batch_size=64)
    from_loader = open_input(net, loader).data
    assert from_loader.input_shape == digits.input_shape
    assert len(from_loader.y_train) + len(from_loader.y_val) == len(digits.y_test)
    assert open_input(net, "digits").kind == "builtin"
    with pytest.raises(InvalidParameterError, match="'data'.*DataLoader") as info:
        open_input(net, np.zeros((3, 64)))
    assert info.value.value == "ndarray"
    assert open_input(net, None, data_required=False).data is None


def test_verbs_that_train_refuse_an_onnx_model_in_the_same_words(onnx_file, tmp_path):
    from core.continual import continual

    verbs = _verbs(tmp_path)
    errors = [_error(verbs["tune"], onnx_file, "digits"),
              _error(verbs["scale"], onnx_file, "digits"),
              _error(lambda m, d: continual(m, None, None, out_dir=tmp_path / "c"),
                     onnx_file, None)]
    assert all(isinstance(e, UnsupportedModelError) and "an ONNX model" in str(e)
               for e in errors), errors
    assert not any(str(tmp_path) in str(e) for e in errors)
