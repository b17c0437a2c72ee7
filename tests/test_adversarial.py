"""Inputs nobody here planned for: models and data users bring, each either measured truthfully
(the report's accuracy equals an onnxruntime-only check of the shipped file) or refused with one
clear error that leaves nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FAST_MEASURE
from tests.helpers import onnx_zoo as zoo

# What a clear error never shows: an internal error, a bare Python exception name, a server path.
UNCLEAR = re.compile(r"internal error|traceback|\b(Key|Type|Attribute|Index|Value|Runtime|"
                     r"Name|Assertion|ZeroDivision|OS|FileNotFound)Error\b|/(tmp|home|root|"
                     r"work|var|usr)/", re.IGNORECASE)


def _clear(message: str) -> str:
    assert message and not UNCLEAR.search(message), message
    return message


def _export(model, path: Path, example, *, opset: int = 17, dynamic: str | None = "batch"
            ) -> Path:
    """A legacy-exporter ONNX file (quick), batch dimension named ``dynamic`` or fixed."""
    import warnings

    import torch

    axes = {"input": {0: dynamic}, "logits": {0: dynamic}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the user's legacy exporter
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes)
    return path


def _benchmark(model: Path, data, out: Path) -> dict:
    from core.runs import benchmark_model

    result = benchmark_model(model, data, out_dir=out, measure_options=FAST_MEASURE)
    return getattr(result, "report", result)


def _nets():
    import torch
    from torch import nn

    class NormsAndDepthwise(nn.Module):  # GroupNorm, LayerNorm, a depthwise conv
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.gn = nn.GroupNorm(2, 8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.ln = nn.LayerNorm([8, 8, 8])
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = torch.relu(self.ln(self.dw(torch.relu(self.gn(self.conv(x))))))
            return self.fc(x.mean((2, 3)))

    class Probabilities(nn.Module):  # softmax inside: the output is probabilities
        def __init__(self) -> None:
            super().__init__()
            self.net = zoo.tiny_net()

        def forward(self, x):
            return torch.softmax(self.net(x), 1)

    return {"norms_depthwise": NormsAndDepthwise, "probabilities": Probabilities}


@pytest.mark.parametrize("name, opset, dynamic", [
    ("norms_depthwise", 17, "batch"), ("probabilities", 13, "N_rows"),
    ("probabilities", 17, None),
])
def test_other_architectures_and_exports_are_measured_truthfully(digits, tmp_path, name, opset,
                                                                 dynamic):
    import torch

    torch.manual_seed(0)
    net = _nets()[name]()
    if name == "probabilities":  # trained, so that accuracy is far from chance
        zoo.train_tiny(net.net, digits.X_train, digits.y_train, epochs=3)
    example = torch.from_numpy(digits.X_train[:2 if dynamic else 1])
    path = _export(net, tmp_path / "m.onnx", example, opset=opset, dynamic=dynamic)
    report = _benchmark(path, digits, tmp_path / "run")
    X, y = digits.split("test")
    assert report["result"]["accuracy"] == pytest.approx(_ort_accuracy(tmp_path / "run", X, y),
                                                         abs=1e-6)
    if name == "probabilities":
        assert report["result"]["accuracy"] > 0.5


def _ort_accuracy(run: Path, X: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of ``run/model.onnx`` with onnxruntime alone, fed in its own input type, row
    by row (any batch dimension accepts one row at a time), scored on its first float
    [batch, classes] output."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    scores = next(o.name for o in sess.get_outputs()  # the first [batch, classes] float output
                  if o.type.startswith("tensor(float") and len(o.shape) == 2)
    preds = [sess.run([scores], {inp.name: X[i:i + 1].astype(dtype)})[0].argmax(1)[0]
             for i in range(len(X))]
    return float((np.array(preds) == y).mean())


def test_fewer_scores_than_classes_is_one_clear_error_and_nothing_written(digits, tmp_path):
    import torch

    from core.errors import StudioError
    from core.quantization import quantize

    path = _export(zoo.tiny_net(num_classes=5), tmp_path / "five.onnx",
                   torch.from_numpy(digits.X_train[:2]))
    for verb in ("benchmark", "quantize"):
        out = tmp_path / verb
        with pytest.raises(StudioError, match=r"\[5\] scores per row.*up to class 9") as info:
            if verb == "benchmark":
                _benchmark(path, digits, out)
            else:
                quantize(path, digits, "ort-dynamic-int8", out_dir=out,
                         measure_options=FAST_MEASURE)
        _clear(str(info.value))
        assert not out.exists()


def _token_model(path: Path) -> Path:
    """An embedding classifier over int64 token ids (what NLP exports take)."""
    from onnx import TensorProto, helper, numpy_helper

    emb = numpy_helper.from_array(np.random.default_rng(0).standard_normal((17, 10))
                                  .astype(np.float32), "emb")
    nodes = [helper.make_node("Gather", ["emb", "tokens"], ["vectors"]),
             helper.make_node("ReduceMean", ["vectors"], ["logits"], axes=[1], keepdims=0)]
    graph = helper.make_graph(
        nodes, "tokens", [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [emb])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    import onnx

    onnx.save(model, str(path))
    return path


def test_a_model_with_a_non_float_input_is_refused_before_any_work(tmp_path):
    from core.artifacts import load_model
    from core.errors import UnsupportedModelError

    path = _token_model(tmp_path / "tokens.onnx")
    with pytest.raises(UnsupportedModelError, match="'tokens' of type int64") as info:
        load_model(path)
    _clear(str(info.value))


def test_half_precision_model_never_ships_a_method_that_did_nothing(digits, tmp_path):
    import torch

    from core.errors import StudioError
    from core.quantization import quantize

    half = zoo.tiny_net().half()
    path = _export(half, tmp_path / "half.onnx", torch.from_numpy(digits.X_train[:2]).half())
    report = _benchmark(path, digits, tmp_path / "bench")  # measured as given: float16 in
    X, y = digits.split("test")
    assert report["result"]["accuracy"] == pytest.approx(_ort_accuracy(tmp_path / "bench", X, y),
                                                         abs=1e-6)
    cases = {"ort-static-int8": "calibrates a float32 model",
             "ort-int4": "float32 model; this one takes float16 input",
             "ort-dynamic-int8": "float32 model; this one takes float16 input",
             "ort-fp16": "did nothing.*already half precision"}
    for method, says in cases.items():
        out = tmp_path / method
        with pytest.raises(StudioError, match=says) as info:
            quantize(path, digits, method, out_dir=out, measure_options=FAST_MEASURE)
        _clear(str(info.value))
        assert not out.exists()


def _npz(path: Path, X, y) -> Path:
    np.savez(path, X=X, y=y)
    return path


def test_label_and_value_shapes_users_write(tmp_path):
    from core.data import load_dataset
    from core.errors import DataError

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)).astype(np.float32), np.arange(40) % 2
    column = load_dataset(_npz(tmp_path / "column.npz", X, y[:, None]))  # Keras-style [N, 1]
    assert column.num_classes == 2 and column.y_train.ndim == 1
    with pytest.raises(DataError, match=r"one label per row.*\(40, 2\)") as info:
        load_dataset(_npz(tmp_path / "onehot.npz", X, np.eye(2)[y]))
    _clear(str(info.value))
    missing = y.astype(np.float64)
    missing[5] = np.nan
    with pytest.raises(DataError, match="1 missing \\(NaN\\) or infinite labels"):
        load_dataset(_npz(tmp_path / "nan_label.npz", X, missing))
    huge = X.astype(np.float64)
    huge[3, 1] = 1e300  # finite in float64, infinity once a model gets it as float32
    with pytest.raises(DataError, match="beyond float32's range") as info:
        load_dataset(_npz(tmp_path / "huge.npz", huge, y))
    _clear(str(info.value))
    csv = tmp_path / "huge.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{1e300 if i == 3 else i},{i % 2}\n"
                                           for i in range(20)))
    with pytest.raises(DataError, match="beyond float32's range"):
        load_dataset(csv)


def test_csv_dialects_and_a_header_without_rows(tmp_path):
    from core.data import load_dataset
    from core.errors import DataError

    rows = "".join(f"{i};{i * 0.5};{'yes' if i % 2 else 'no'}\n" for i in range(30))
    semicolon = tmp_path / "excel.csv"
    semicolon.write_text("a;b;label\n" + rows, encoding="utf-8-sig")  # Excel: BOM and ';'
    data = load_dataset(semicolon)
    assert data.input_shape == (2,) and data.class_names == ["no", "yes"]
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b,label\n")
    with pytest.raises(DataError, match="has a header but no rows") as info:
        load_dataset(empty)
    _clear(str(info.value))


@pytest.mark.parametrize("verb", ["prune", "torch-static-int8"])
def test_a_graph_the_converter_cannot_run_is_refused_clearly(digits, tmp_path, verb):
    """onnx2torch turns a LayerNorm over dims the graph leaves unnamed into a module that
    fails when called: one clear refusal, not a torch RuntimeError."""
    import torch

    from core.errors import StudioError

    path = _export(_nets()["norms_depthwise"](), tmp_path / "ln.onnx",
                   torch.from_numpy(digits.X_train[:2]))
    out = tmp_path / "out"
    with pytest.raises(StudioError) as info:
        if verb == "prune":
            from core.pruning import PruningConfig, prune

            prune(path, digits, PruningConfig(method="structured-l2", sparsity=0.5),
                  out_dir=out, measure_options=FAST_MEASURE)
        else:
            from core.quantization import quantize

            quantize(path, digits, verb, out_dir=out, measure_options=FAST_MEASURE)
    _clear(str(info.value))
    assert not out.exists()


def test_a_file_without_some_classes_is_scored_against_the_models_own_outputs(digits,
                                                                              tmp_path):
    """Integer labels are class indices as given: a test file that lacks class 0 is scored
    label k against output k (recoding 1..9 to 0..8 reported ~1 % for a ~90 % model)."""
    import torch

    from core.data import dataset_from_spec, load_dataset

    net = zoo.train_tiny(zoo.tiny_net(), digits.X_train, digits.y_train, epochs=3)
    path = _export(net, tmp_path / "m.onnx", torch.from_numpy(digits.X_train[:2]))
    X, y = np.concatenate([digits.X_train, digits.X_test]), np.concatenate([digits.y_train,
                                                                             digits.y_test])
    keep = y != 0
    data = load_dataset(_npz(tmp_path / "no_zero.npz", X[keep], y[keep]))
    assert data.class_names == [str(k) for k in range(10)] and data.spec.labels == "index"
    report = _benchmark(path, data, tmp_path / "run")
    Xt, yt = data.split("test")
    assert report["result"]["accuracy"] == pytest.approx(_ort_accuracy(tmp_path / "run", Xt, yt))
    assert report["result"]["accuracy"] > 0.5
    earlier = {k: v for k, v in report["data"].items() if k != "labels"}  # an older report
    assert dataset_from_spec(earlier).class_names == [str(k) for k in range(1, 10)]
    text = load_dataset(_npz(tmp_path / "text.npz", X[:40], np.array(["b", "a"] * 20)))
    assert text.class_names == ["a", "b"]  # text labels: coded by sorted value


def _sklearn_zipmap_onnx(X: np.ndarray, y: np.ndarray, path: Path) -> Path:
    """A logistic regression as skl2onnx writes it by default: ``output_label`` (int64) and
    ``output_probability``, a sequence of maps (ZipMap), both from ai.onnx.ml operators."""
    import onnx
    from onnx import TensorProto, helper

    clf = zoo._fit_logistic(X, y)
    classes = [int(c) for c in clf.classes_]
    nodes = [
        helper.make_node("LinearClassifier", ["float_input"], ["output_label", "scores"],
                         domain="ai.onnx.ml", coefficients=clf.coef_.ravel().tolist(),
                         intercepts=clf.intercept_.tolist(), classlabels_ints=classes,
                         multi_class=1, post_transform="SOFTMAX"),
        helper.make_node("ZipMap", ["scores"], ["output_probability"], domain="ai.onnx.ml",
                         classlabels_int64s=classes),
    ]
    maps = helper.make_sequence_type_proto(helper.make_map_type_proto(
        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    graph = helper.make_graph(
        nodes, "sklearn", [helper.make_tensor_value_info("float_input", TensorProto.FLOAT,
                                                         [None, X.shape[1]])],
        [helper.make_tensor_value_info("output_label", TensorProto.INT64, [None]),
         helper.make_value_info("output_probability", maps)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("first_label", [0, 1])
def test_a_default_skl2onnx_classifier_with_zipmap_is_measured(digits, tmp_path, first_label):
    """Labels 0..9, and 1..10 (the model's columns are sorted labels; the studio scores
    integer labels as indices, so column j is routed to label j + 1)."""
    from core.data import load_dataset

    X = np.concatenate([digits.X_train, digits.X_test]).reshape(-1, 64)
    y = np.concatenate([digits.y_train, digits.y_test]) + first_label
    data = load_dataset(_npz(tmp_path / "flat.npz", X, y))
    path = _sklearn_zipmap_onnx(*data.split("train"), tmp_path / "sk.onnx")
    report = _benchmark(path, data, tmp_path / "run")
    Xt, yt = data.split("test")
    assert report["result"]["accuracy"] == pytest.approx(_ort_accuracy(tmp_path / "run", Xt, yt))
    assert report["result"]["accuracy"] > 0.9
    assert any("ZipMap" in w for w in report["warnings"])


def _linear_onnx(path: Path, W: np.ndarray, b: np.ndarray, *, label_column: bool = False,
                 sigmoid: bool = False) -> Path:
    """A linear classifier over flat features; ``label_column`` adds a float [N, 1] predicted
    label as the first output (as some converters write), ``sigmoid`` ends in a Sigmoid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scores = "probabilities" if sigmoid else "variable"
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["z" if sigmoid else scores])]
    outputs = [helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["N", W.shape[1]])]
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["z"], [scores]))
    if label_column:
        nodes += [helper.make_node("ArgMax", [scores], ["index"], axis=1, keepdims=1),
                  helper.make_node("Cast", ["index"], ["label"], to=TensorProto.FLOAT)]
        outputs.insert(0, helper.make_tensor_value_info("label", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                        ["N", W.shape[0]])], outputs,
        [numpy_helper.from_array(W.astype(np.float32), "W"),
         numpy_helper.from_array(b.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_float_label_column_output_first_is_not_scored(digits, tmp_path):
    """A converter's float [N, 1] predicted-label output listed before the probabilities was
    scored as the class scores (one column: refused for 10 classes); the wider output is."""
    from core.data import load_dataset

    X = np.concatenate([digits.X_train, digits.X_test]).reshape(-1, 64)
    data = load_dataset(_npz(tmp_path / "flat.npz", X, np.concatenate([digits.y_train,
                                                                       digits.y_test])))
    clf = zoo._fit_logistic(*data.split("train"))
    path = _linear_onnx(tmp_path / "m.onnx", clf.coef_.T, clf.intercept_, label_column=True)
    report = _benchmark(path, data, tmp_path / "run")
    assert report["onnx"]["output_name"] == "variable"
    Xt, yt = data.split("test")
    assert report["result"]["accuracy"] == pytest.approx(
        zoo.ort_accuracy(tmp_path / "run", Xt, yt, output="variable"))
    assert report["result"]["accuracy"] > 0.9
    assert any("'label' ['N', 1], 'variable' ['N', 10]" in w and "--output-name" in w
               for w in report["warnings"])


@pytest.mark.parametrize("sigmoid", [False, True])
def test_a_one_column_binary_model_is_refused_with_how_to_export_two(tmp_path, sigmoid):
    from core.data import load_dataset
    from core.errors import StudioError

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3)).astype(np.float32)
    data = load_dataset(_npz(tmp_path / "bin.npz", X, (X.sum(1) > 0).astype(int)))
    path = _linear_onnx(tmp_path / "m.onnx", np.ones((3, 1)), np.zeros(1), sigmoid=sigmoid)
    with pytest.raises(StudioError, match=r"one score per row.*\[batch, 2\].*1 - p, p") as info:
        _benchmark(path, data, tmp_path / "run")
    _clear(str(info.value))
    assert not (tmp_path / "run").exists()


def test_a_matmul_add_onnx_classifier_is_pruned_or_refused_never_shipped_unchanged(digits,
                                                                                     tmp_path):
    """Converters write Dense layers as MatMul + Add with constant weights (no Linear after
    onnx2torch): unstructured pruning prunes those constants (was: 'no weight layers');
    structured pruning, which keeps the output layer whole, removed nothing yet shipped the
    fine-tuned model as pruned: now refused, nothing written."""
    from core.errors import StudioError
    from core.pruning import PruningConfig, prune

    path = zoo.sklearn_style_onnx(*digits.split("train"), tmp_path / "sk.onnx", num_classes=10)
    run = prune(path, digits, PruningConfig(method="l1-unstructured", sparsity=0.5,
                                            finetune_epochs=0),
                out_dir=tmp_path / "sparse", measure_options=FAST_MEASURE).report
    assert run["result"]["nonzero_params"] <= run["result"]["params"] - 300
    (layer,) = run["pruning"]["layers"]
    assert layer["width_before"] == 10 and layer["sparsity"] == pytest.approx(0.5, abs=0.01)
    X, y = digits.split("test")
    assert run["result"]["accuracy"] == pytest.approx(zoo.ort_accuracy(tmp_path / "sparse", X, y))
    out = tmp_path / "structured"
    with pytest.raises(StudioError, match=r"removed nothing.*l1-unstructured") as info:
        prune(path, digits, PruningConfig(method="structured-l2", sparsity=0.5,
                                          finetune_epochs=0), out_dir=out,
              measure_options=FAST_MEASURE)
    _clear(str(info.value))
    assert not out.exists()


def test_an_onnx_teacher_with_nothing_to_narrow_gets_no_same_size_student(digits, tmp_path):
    """A one-layer ONNX teacher (MatMul + Add) at width 0.5: structured pruning narrowed
    nothing, yet the report said 'at width 0.5: channels/neurons removed' for a student of the
    teacher's size. Now refused, nothing written."""
    from core.distillation import DistillConfig, distill
    from core.errors import StudioError

    path = zoo.sklearn_style_onnx(*digits.split("train"), tmp_path / "sk.onnx", num_classes=10)
    out = tmp_path / "kd"
    with pytest.raises(StudioError, match=r"width 0.5 cannot be cut.*--width 1") as info:
        distill(path, digits, DistillConfig(epochs=1, width=0.5), out_dir=out,
                measure_options=FAST_MEASURE)
    _clear(str(info.value))
    assert not out.exists()


def test_compare_of_runs_on_different_files_names_them_without_their_folders(tmp_path):
    """The refusal printed each run's data spec, its full path included (a server path for
    uploads)."""
    from core.compare import compare
    from core.errors import DataError

    rng = np.random.default_rng(0)
    model = _linear_onnx(tmp_path / "m.onnx", rng.standard_normal((3, 2)), np.zeros(2))
    runs = []
    for folder in ("a", "b"):
        X = rng.standard_normal((40, 3)).astype(np.float32)
        (tmp_path / folder).mkdir()
        data = _npz(tmp_path / folder / "rows.npz", X, (X[:, 0] > 0).astype(int))
        runs.append(tmp_path / f"run_{folder}")
        _benchmark(model, data, runs[-1])
    with pytest.raises(DataError, match=r"data 'rows.npz' \(another folder\)") as info:
        compare(runs, out_dir=tmp_path / "cmp", measure_options=FAST_MEASURE)
    _clear(str(info.value))
    assert str(tmp_path) not in str(info.value) and not (tmp_path / "cmp").exists()


def test_a_bfloat16_scores_output_is_refused_clearly_not_crashed_on(tmp_path):
    """ONNX Runtime's Python API cannot return bfloat16: the model loaded, then every
    evaluation died with 'RuntimeError: No corresponding Numpy type'."""
    import onnx
    from onnx import TensorProto, helper

    from core.artifacts import load_model
    from core.errors import UnsupportedModelError

    path = _linear_onnx(tmp_path / "m.onnx", np.ones((3, 2)), np.zeros(2))
    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("Cast", ["variable"], ["scores"],
                                             to=TensorProto.BFLOAT16))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("scores", TensorProto.BFLOAT16,
                                                                 ["N", 2]))
    onnx.save(model, str(path))
    for output_name in (None, "scores"):
        with pytest.raises(UnsupportedModelError, match="cannot return a bfloat16") as info:
            load_model(path, output_name=output_name)
        _clear(str(info.value))


def _with_embedding_first(path: Path) -> Path:
    """The model with a float [N, 64] embedding (its input, after a Relu) as its first output,
    before the class scores: as a model that also returns features writes it."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("Relu", ["x"], ["embedding"]))
    model.graph.output.insert(0, helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                               ["N", 64]))
    onnx.save(model, str(path))
    return path


def test_an_embedding_output_listed_first_is_not_scored_the_classes_pick(digits, tmp_path):
    """A float [N, 64] output before the [N, 10] scores was scored (5 % accuracy): with the
    data's 10 classes, the only output 10 wide is scored, the report says so and how to name
    another, and re-measuring the run folder scores the same output."""
    from core.data import load_dataset

    X = np.concatenate([digits.X_train, digits.X_test]).reshape(-1, 64)
    data = load_dataset(_npz(tmp_path / "flat.npz", X, np.concatenate([digits.y_train,
                                                                       digits.y_test])))
    clf = zoo._fit_logistic(*data.split("train"))
    path = _with_embedding_first(_linear_onnx(tmp_path / "m.onnx", clf.coef_.T,
                                              clf.intercept_))
    Xt, yt = data.split("test")
    reports = [_benchmark(source, data, tmp_path / out)
               for source, out in ((path, "run"), (tmp_path / "run", "again"))]
    for report, out in zip(reports, ("run", "again")):
        assert report["onnx"]["output_name"] == "variable"
        assert report["result"]["accuracy"] == pytest.approx(
            zoo.ort_accuracy(tmp_path / out, Xt, yt, output="variable"))
        assert report["result"]["accuracy"] > 0.9
    assert any("'embedding' ['N', 64], 'variable' ['N', 10]" in w and "scores 'variable'" in w
               and "--output-name" in w for w in reports[0]["warnings"])
