"""Sequence classifiers on (N, T, F) data: GRU, LSTM, Conv1d and TransformerEncoder models
brought as ONNX are measured, quantized and profiled on an .npz with a 3-D X; the rows are fed
as the model declares them (a 3-D X gets a channel axis only for a model that takes images),
and the report records what was fed, so a run folder replays it.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.conftest import FAST_MEASURE
from tests.helpers.onnx_zoo import ort_accuracy
from tests.helpers.zoo import (
    SEQUENCE_KINDS,
    export_sequence_onnx,
    fit,
    sequence_arrays,
    sequence_model,
)

STEPS, FEATURES = 12, 4


@pytest.fixture(scope="module")
def seq_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("seq") / "sequences.npz"
    X, y = sequence_arrays(steps=STEPS, features=FEATURES)
    np.savez(path, X=X, y=y)
    return path


@pytest.fixture(scope="module")
def seq_data(seq_npz):
    """The split as a sequence model takes it: rows (T, F) as the file gives them."""
    from core.data import load_dataset

    return load_dataset(seq_npz, channel_axis=False)


@pytest.fixture(scope="module")
def seq_onnx(seq_data, tmp_path_factory):
    """Each kind trained a few seeded epochs and exported with a dynamic batch axis."""
    import torch

    folder = tmp_path_factory.mktemp("seq_models")
    out = {}
    for kind in SEQUENCE_KINDS:
        model = fit(sequence_model(kind, features=FEATURES, steps=STEPS), seq_data,
                    epochs=15, lr=5e-3)
        out[kind] = export_sequence_onnx(model, folder / f"{kind}.onnx",
                                         torch.from_numpy(seq_data.X_test[:2]))
    return out


def _op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_sequence_onnx_is_benchmarked_on_rows_as_given(kind, seq_onnx, seq_npz, seq_data,
                                                      tmp_path):
    from core.runs import benchmark_model

    report = benchmark_model(seq_onnx[kind], seq_npz, out_dir=tmp_path / "run",
                             measure_options=FAST_MEASURE).report
    assert report["data"]["input_shape"] == [STEPS, FEATURES]
    assert report["data"]["channel_axis"] is False
    acc = report["result"]["accuracy"]
    assert acc == pytest.approx(ort_accuracy(tmp_path / "run", seq_data.X_test,
                                             seq_data.y_test))
    assert acc > 0.8  # trained: well above the 1/3 of chance


@pytest.mark.parametrize("method", ["ort-dynamic-int8", "ort-static-int8"])
@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_sequence_onnx_quantizes(kind, method, seq_onnx, seq_npz, seq_data, tmp_path):
    from core import quantize

    out = tmp_path / "q"
    report = quantize(seq_onnx[kind], seq_npz, method, out_dir=out,
                      measure_options=FAST_MEASURE).report
    ops = _op_types(out / "model.onnx")
    assert ops & {"MatMulInteger", "DynamicQuantizeLSTM", "QLinearConv", "QLinearMatMul",
                  "QuantizeLinear", "DynamicQuantizeLinear"}, ops  # something is INT8
    assert report["result"]["accuracy"] == pytest.approx(
        ort_accuracy(out, seq_data.X_test, seq_data.y_test))
    assert report["data"]["input_shape"] == [STEPS, FEATURES]
    assert report["baseline"]["accuracy"] - report["result"]["accuracy"] < 0.1


@pytest.mark.parametrize("kind,op", [("gru", "GRU"), ("lstm", "LSTM"), ("conv1d", "FusedConv"),
                                     ("transformer", "Softmax")])
def test_sequence_onnx_is_profiled_layer_by_layer(kind, op, seq_onnx, seq_npz):
    from core import profile

    prof = profile(seq_onnx[kind], seq_npz, batch_size=4, runs=3, warmup=1)
    assert prof.backend == "onnxruntime"
    assert op in {layer.kind for layer in prof.layers}


@pytest.mark.parametrize("kind,op", [("gru", "GRU"), ("lstm", "LSTM")])
def test_structured_pruning_of_a_recurrent_onnx_is_refused_naming_the_operator(
        kind, op, seq_onnx, seq_npz, tmp_path):
    from core import prune
    from core.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match=rf"no converter for operator\(s\) {op}"):
        prune(seq_onnx[kind], seq_npz, "structured-l2", out_dir=tmp_path / "p",
              measure_options=FAST_MEASURE)
    assert not (tmp_path / "p").exists()


def test_a_run_folder_replays_the_sequence_layout(seq_onnx, seq_data, seq_npz, tmp_path):
    """A quantize of a benchmark run, with no data given, rebuilds the recorded data: the
    same rows fed as given (an older report, without the entry, gets the channel axis)."""
    from core import quantize
    from core.data import dataset_from_spec
    from core.runs import benchmark_model

    base = benchmark_model(seq_onnx["gru"], seq_npz, out_dir=tmp_path / "base",
                           measure_options=FAST_MEASURE).report
    report = quantize(tmp_path / "base", None, "ort-dynamic-int8", out_dir=tmp_path / "q",
                      measure_options=FAST_MEASURE).report
    assert report["data"]["input_shape"] == [STEPS, FEATURES]
    assert report["baseline"]["accuracy"] == base["result"]["accuracy"]
    old = {k: v for k, v in base["data"].items() if k not in ("channel_axis", "input_shape")}
    assert dataset_from_spec(old).input_shape == (1, STEPS, FEATURES)


def test_builtin_mlp_flattens_sequences(seq_npz, seq_data, tmp_path):
    """The built-in MLP takes a 3-D X like every built-in family, with a channel axis
    (N, 1, T, F), and flattens it: its model.onnx scores those rows like the report says."""
    from core.runs import train_baseline

    report = train_baseline("mlp", seq_npz, out_dir=tmp_path / "mlp", epochs=20, seed=0,
                            measure_options=FAST_MEASURE).report
    assert report["data"]["input_shape"] == [1, STEPS, FEATURES]
    assert report["config"]["model_kwargs"]["input_dim"] == STEPS * FEATURES
    acc = report["result"]["accuracy"]
    assert acc == pytest.approx(ort_accuracy(tmp_path / "mlp", seq_data.X_test[:, None],
                                             seq_data.y_test))
    assert acc > 0.6


def test_grayscale_image_npz_still_trains_the_cnn(tmp_path):
    """An .npz of (N, H, W) grayscale images trains the CNN on (N, 1, H, W) as before."""
    from sklearn.datasets import load_digits

    from core.runs import train_baseline

    digits = load_digits()
    path = tmp_path / "gray.npz"
    np.savez(path, X=(digits.images / 16).astype(np.float32), y=digits.target)
    report = train_baseline("cnn", path, out_dir=tmp_path / "cnn", epochs=3, seed=0,
                            measure_options=FAST_MEASURE).report
    assert report["config"]["model_kwargs"]["input_shape"] == [1, 8, 8]
    assert report["data"]["input_shape"] == [1, 8, 8]
    assert report["data"]["channel_axis"] is True
    assert report["result"]["accuracy"] > 0.85


_PRUNE_IN_CHILD = """
import json, sys
from core import prune
from core.errors import UnsupportedModelError
try:
    prune(sys.argv[1], sys.argv[2], "structured-l2", out_dir=sys.argv[3],
          measure_options={"budget_s": 0.02, "memory": False})
    print(json.dumps({"refused": None}))
except UnsupportedModelError as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def _structured_prune_in_child(model_path, npz, out) -> str | None:
    """structured-l2 in a child process the caller stops (a hang fails, not blocks): the
    refusal's message, or None when it pruned."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    try:
        done = subprocess.run(
            [sys.executable, "-c", _PRUNE_IN_CHILD, str(model_path), str(npz), str(out)],
            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail(f"structured pruning of {model_path.name} did not end")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["refused"]


def test_structured_pruning_of_a_transformer_onnx_ends_with_a_clear_refusal(
        seq_onnx, seq_npz, seq_data, tmp_path):
    """An exported TransformerEncoder's attention (a MatMul of two activations between
    reshapes) kept Torch-Pruning's grouping running past 10 minutes; structured pruning now
    refuses it up front, naming the product and what applies, and writes nothing. The
    unstructured method the message names does prune the model."""
    from core import prune

    refused = _structured_prune_in_child(seq_onnx["transformer"], seq_npz, tmp_path / "p")
    assert refused and "MatMul of two activations 'encoder/layers/0/self_attn/MatMul" in refused
    assert "l1-unstructured" in refused and "ort-dynamic-int8" in refused
    assert not (tmp_path / "p").exists()

    report = prune(seq_onnx["transformer"], seq_npz, "l1-unstructured", sparsity=0.5,
                   out_dir=tmp_path / "u", measure_options=FAST_MEASURE).report
    assert report["result"]["nonzero_params"] < 0.6 * report["baseline"]["nonzero_params"]
    assert report["result"]["accuracy"] == pytest.approx(
        ort_accuracy(tmp_path / "u", seq_data.X_test, seq_data.y_test))


def test_structured_pruning_of_an_opset_23_attention_node_is_refused(seq_npz, tmp_path):
    """From opset 23 the exporter writes the attention as one Attention node: its grouping
    did not end either; refused the same way, naming the node."""
    import contextlib
    import io
    import warnings

    import torch

    path = tmp_path / "transformer23.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(sequence_model("transformer", features=FEATURES, steps=STEPS).eval(),
                          (torch.randn(2, STEPS, FEATURES),), str(path), dynamo=True,
                          opset_version=23, dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert "Attention" in _op_types(path)
    refused = _structured_prune_in_child(path, seq_npz, tmp_path / "p")
    assert refused and "ONNX Attention node" in refused and "l1-unstructured" in refused
    assert not (tmp_path / "p").exists()
