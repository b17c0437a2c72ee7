"""Dense layers as converters write them (tf2onnx/Keras, sklearn-onnx: MatMul by a constant
kernel, then Add of its bias; sometimes MatMul alone) convert to nn.Linear, so structured
pruning, low-rank factorization and torch INT8 quantization apply to them, with outputs equal
to ONNX Runtime's; a MatMul over a sequence (rank 3) is left as it is."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from core.artifacts import onnx_to_torch
from core.artifacts._convert import onnx_parity
from core.artifacts._dense import dense_layers_as_gemm
from core.data import load_dataset
from tests.conftest import FAST_MEASURE as FAST
from tests.helpers import onnx_zoo, zoo


@pytest.fixture(scope="module")
def flat_digits(tmp_path_factory):
    """Digits as 64 features a row, from a user's .npz (what a tabular model is fed)."""
    digits = load_dataset("digits")
    flat = dataclasses.replace(digits, **{
        f"X_{split}": getattr(digits, f"X_{split}").reshape(-1, 64)
        for split in ("train", "val", "test")})
    path = tmp_path_factory.mktemp("flat") / "digits64.npz"
    zoo.save_npz(flat, path)
    return load_dataset(str(path))


@pytest.fixture(scope="module")
def mlp(flat_digits):
    """A 64-64-32-10 MLP fitted on the flat digits."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return onnx_zoo.train_tiny(net, flat_digits.X_train, flat_digits.y_train, epochs=10)


def keras_mlp_onnx(net, path, *, opset: int = 13, row_bias: bool = False,
                   last_bias: bool = True, weights_as_inputs: bool = False):
    """``net``'s Linear layers as tf2onnx writes Keras Dense layers: MatMul(x, kernel) then
    Add(_, bias), Relu between, Softmax at the end; batch dynamic ("N"). ``row_bias`` stores
    biases as [1, n]; without ``last_bias`` the last layer is a MatMul alone;
    ``weights_as_inputs`` also lists the weights as graph inputs (as older exporters do)."""
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    nodes, inits, x = [], [], "input"
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        kernel, bias = f"dense_{i}/kernel", f"dense_{i}/bias"
        w = layer.weight.detach().numpy().T.copy()
        b = layer.bias.detach().numpy().reshape((1, -1) if row_bias else (-1,))
        nodes.append(helper.make_node("MatMul", [x, kernel], [f"dense_{i}/MatMul:0"]))
        inits.append(numpy_helper.from_array(w, kernel))
        z = f"dense_{i}/MatMul:0"
        if last_bias or not last:
            z = f"dense_{i}/BiasAdd:0"
            nodes.append(helper.make_node("Add", [f"dense_{i}/MatMul:0", bias], [z]))
            inits.append(numpy_helper.from_array(b, bias))
        x = "probs" if last else f"dense_{i}/Relu:0"
        nodes.append(helper.make_node("Softmax", [z], [x], axis=-1) if last
                     else helper.make_node("Relu", [z], [x]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(i.name, i.data_type, i.dims) for i in inits]
    graph = helper.make_graph(nodes, "keras_mlp", inputs, [
        helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _linears(module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("opset,older_forms", [(13, False), (21, True)])
def test_dense_layers_become_linear_layers_with_onnx_runtimes_outputs(
        mlp, flat_digits, tmp_path, opset, older_forms):
    """At opset 13, and at 21 with other forms converters write: biases of shape [1, n], a
    last MatMul without a bias, the weights also listed as graph inputs."""
    last_bias = not older_forms
    path = keras_mlp_onnx(mlp, tmp_path / "mlp.onnx", opset=opset, row_bias=older_forms,
                          last_bias=last_bias, weights_as_inputs=older_forms)
    module = onnx_to_torch(path)  # verified against onnxruntime on random rows
    linears = _linears(module)
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 64), (64, 32), (32, 10)]
    assert (linears[-1].bias is not None) == last_bias
    assert sum(p.numel() for p in module.parameters()) == sum(
        p.numel() for p in mlp.parameters()) - (0 if last_bias else 10)
    assert onnx_parity(module, path, flat_digits.X_test) < 1e-5  # real rows too
    with torch.no_grad():  # still the user's probabilities in eval mode
        probs = module.eval()(torch.from_numpy(flat_digits.X_test[:8]))
    assert torch.allclose(probs.sum(1), torch.ones(8), atol=1e-5)


def test_structured_pruning_prunes_a_dense_onnx_model(mlp, flat_digits, tmp_path):
    from core.pruning import PruningConfig, prune

    path = keras_mlp_onnx(mlp, tmp_path / "mlp.onnx", opset=21)
    report = prune(path, flat_digits, PruningConfig(method="structured-l2", sparsity=0.5,
                                                    finetune_epochs=2, seed=0),
                   out_dir=tmp_path / "pruned", measure_options=FAST).report
    base, res = report["baseline"], report["result"]
    assert res["params"] < 0.6 * base["params"]
    assert res["size_bytes"] < 0.7 * base["size_bytes"]
    narrowed = {r["width_after"] for r in report["pruning"]["layers"]
                if r["width_after"] < r["width_before"]}
    assert narrowed, "no layer lost a neuron"
    assert res["accuracy"] >= base["accuracy"] - 0.05  # the fine-tune recovered it
    X, y = flat_digits.X_test, flat_digits.y_test
    assert onnx_zoo.ort_accuracy(tmp_path / "pruned", X, y) == pytest.approx(res["accuracy"],
                                                                              abs=1e-9)


def test_unstructured_pruning_zeroes_the_dense_layers_weights(mlp, flat_digits, tmp_path):
    """onnx2torch hands a Gemm's Linear a transposed view of its weight (transB=0, as every
    rewritten MatMul is); torch.nn.utils.prune failed on it ('view size is not compatible')."""
    from core.pruning import PruningConfig, prune

    path = keras_mlp_onnx(mlp, tmp_path / "mlp.onnx")
    report = prune(path, flat_digits, PruningConfig(method="l1-unstructured", sparsity=0.5,
                                                    finetune_epochs=0),
                   out_dir=tmp_path / "sparse", measure_options=FAST).report
    weights = 64 * 64 + 64 * 32 + 32 * 10
    assert report["result"]["nonzero_params"] == report["result"]["params"] - weights // 2
    X, y = flat_digits.X_test, flat_digits.y_test
    assert onnx_zoo.ort_accuracy(tmp_path / "sparse", X, y) == pytest.approx(
        report["result"]["accuracy"], abs=1e-9)


@pytest.mark.parametrize("method", ["torch-dynamic-int8", "torch-static-int8"])
def test_torch_int8_quantizes_the_dense_layers_of_an_onnx_model(mlp, flat_digits, tmp_path,
                                                                 method):
    from core.quantization import quantize

    path = keras_mlp_onnx(mlp, tmp_path / "mlp.onnx")
    report = quantize(path, flat_digits, {"method": method}, out_dir=tmp_path / "q",
                      measure_options=FAST).report
    assert len(report["quantization"]["layers_quantized"]) == 3
    assert abs(report["result"]["accuracy"] - report["baseline"]["accuracy"]) <= 0.02


def test_factorize_splits_the_dense_layers_of_an_onnx_model(mlp, flat_digits, tmp_path):
    from core.lowrank import LowRankConfig, factorize

    path = keras_mlp_onnx(mlp, tmp_path / "mlp.onnx")
    report = factorize(path, flat_digits, LowRankConfig(rank_ratio=0.25, finetune_epochs=1),
                       out_dir=tmp_path / "lr", measure_options=FAST).report
    assert [e["kind"] for e in report["lowrank"]["layers"]] == ["Linear"] * 3
    assert report["result"]["params"] < report["baseline"]["params"]
    X, y = flat_digits.X_test, flat_digits.y_test
    assert onnx_zoo.ort_accuracy(tmp_path / "lr", X, y) == pytest.approx(
        report["result"]["accuracy"], abs=1e-9)


def _sequence_onnx(path, rng):
    """(N, 8, 8) rows: a per-step MatMul + Add (rank 3, left alone), mean over the steps,
    then a Dense classifier (rank 2, becomes a Linear)."""
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w2"], ["s"]),
             helper.make_node("Add", ["s", "b2"], ["scores"])]
    graph = helper.make_graph(
        nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_a_matmul_over_a_sequence_is_left_alone_and_converts_exactly(tmp_path):
    path = _sequence_onnx(tmp_path / "seq.onnx", np.random.default_rng(0))
    model = onnx.load(str(path))
    assert dense_layers_as_gemm(model) == 1
    assert [n.op_type for n in model.graph.node] == [
        "MatMul", "Add", "Relu", "ReduceMean", "Gemm"]
    module = onnx_to_torch(path)
    assert [(m.in_features, m.out_features) for m in _linears(module)] == [(16, 10)]
    X = load_dataset("digits").X_test.reshape(-1, 8, 8)  # digit rows as 8 steps of 8
    assert onnx_parity(module, path, X) < 1e-4


def _one_layer(path, b_shape, *, batch="N", weight_first=False):
    """x @ w + a constant of ``b_shape``, or w @ x (x of shape [6, 6])."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 6)).astype(np.float32), "w")]
    if weight_first:
        nodes = [helper.make_node("MatMul", ["w", "x"], ["y"])]
        batch = 6
    else:
        b = rng.standard_normal(b_shape).astype(np.float32)
        inits.append(numpy_helper.from_array(b, "b"))
        nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
                 helper.make_node("Add", ["m", "b"], ["y"])]
    out_shape = [*b_shape[:-2], batch, 6] if b_shape else [6, 6]
    graph = helper.make_graph(
        nodes, "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("case", ["per_row_bias", "rank_changing_bias", "weight_first"])
def test_what_is_not_a_dense_layer_keeps_its_outputs(tmp_path, case):
    """A constant added per row or one that adds an axis is no bias, and w @ x is no Linear:
    they are not folded into one; the conversion stays exact."""
    path = tmp_path / f"{case}.onnx"
    if case == "per_row_bias":
        _one_layer(path, (4, 6), batch=4)
    elif case == "rank_changing_bias":
        _one_layer(path, (1, 1, 6))  # one value per column, yet rank 3
    else:
        _one_layer(path, None, weight_first=True)
    module = onnx_to_torch(path)
    X = np.random.default_rng(2).standard_normal((12, 6)).astype(np.float32)
    assert onnx_parity(module, path, X) < 1e-4
    linears = [(m.in_features, m.out_features, m.bias) for m in _linears(module)]
    assert linears == ([] if case == "weight_first" else [(6, 6, None)])  # MatMul alone
