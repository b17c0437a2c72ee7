"""Small ONNX classifiers as users bring them: torch's default export (external data, fixed
batch), a fixed-batch single file, a sklearn-onnx-style graph with an int64 label output first,
and a model with its input normalization inside. Tiny, trained on digits in about a second."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _torch():
    import torch

    return torch


def tiny_net(num_classes: int = 10, *, normalize: tuple[float, float] | None = None) -> Any:
    """A tiny digits CNN; with ``normalize`` (mean, std) it standardizes its own input."""
    torch = _torch()
    nn = torch.nn

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            mean, std = normalize if normalize is not None else (0.0, 1.0)
            self.register_buffer("mean", torch.tensor(float(mean)))
            self.register_buffer("std", torch.tensor(float(std)))
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(8 * 4 * 4, 32)
            self.fc2 = nn.Linear(32, num_classes)

        def forward(self, x):
            x = (x - self.mean) / self.std
            x = self.pool(torch.relu(self.conv(x)))
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    return TinyNet()


def train_tiny(model: Any, X: np.ndarray, y: np.ndarray, *, epochs: int = 10,
               seed: int = 0) -> Any:
    """Adam in batches of 128 on (X, y), one thread (OpenMP spinning on a busy shared
    machine made two threads 6x slower); deterministic and quick on digits-sized data."""
    torch = _torch()
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y)
    model.train()
    try:
        for _ in range(epochs):
            for i in range(0, len(Xt), 128):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(Xt[i:i + 128]), yt[i:i + 128])
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def export_default(model: Any, path: str | Path, example: Any) -> Path:
    """``torch.onnx.export(model, (x,), path)`` with torch 2.13's defaults: the dynamo exporter,
    weights in ``<path>.data`` and the batch dimension fixed at ``example``'s."""
    torch = _torch()
    with warnings.catch_warnings():
        # a user's export, made as users make it: torch's own notes about it are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), verbose=False)
    return Path(path)


def export_fixed_batch(model: Any, path: str | Path, example: Any) -> Path:
    """The legacy exporter without dynamic axes: one file, batch fixed at ``example``'s."""
    torch = _torch()
    with warnings.catch_warnings():
        # a user's legacy export (what many ONNX files out there come from): torch's
        # deprecation of that exporter is not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17)
    return Path(path)


def _fit_logistic(X: np.ndarray, y: np.ndarray) -> Any:
    """A logistic regression fitted on one BLAS thread (15 s → 0.3 s on a busy shared machine)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return LogisticRegression(max_iter=300).fit(X, y)


def sklearn_style_onnx(X: np.ndarray, y: np.ndarray, path: str | Path, *,
                       num_classes: int) -> Path:
    """A logistic regression as sklearn-onnx writes it: outputs ``label`` (int64 [N]) first,
    then ``probabilities`` (float [N, C]); the input is flattened inside."""
    from onnx import TensorProto, helper, numpy_helper

    flat = X.reshape(len(X), -1)
    clf = _fit_logistic(flat, y)
    W = clf.coef_.T.astype(np.float32)
    b = clf.intercept_.astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["float_input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "coef"], ["mm"], name="linear"),
        helper.make_node("Add", ["mm", "intercept"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    return _save(
        nodes,
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, ["N", *X.shape[1:]])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(W, "coef"), numpy_helper.from_array(b, "intercept")], path)


def ort_accuracy(files_dir: str | Path, X: np.ndarray, y: np.ndarray, *,
                 output: str | None = None) -> float:
    """Accuracy of ``files_dir/model.onnx`` with onnxruntime alone (row by row when its batch
    is fixed); the scores output is ``output`` or the first float output of rank 2."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(Path(files_dir) / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = sess.get_outputs()
    name = output or next(o.name for o in outs if o.type == "tensor(float)" and len(o.shape) == 2)
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else 64
    preds = []
    for i in range(0, len(X), batch):
        part = X[i:i + batch].astype(np.float32)
        if len(part) < batch:  # pad a short last chunk for a fixed batch, then drop the pad
            pad = np.repeat(part[-1:], batch - len(part), axis=0)
            scores = sess.run([name], {inp.name: np.concatenate([part, pad])})[0][:len(part)]
        else:
            scores = sess.run([name], {inp.name: part})[0]
        preds.append(np.asarray(scores).argmax(axis=1))
    return float((np.concatenate(preds) == y).mean())


def with_external_data(path: str | Path) -> Path:
    """Re-save an ONNX file with its weights in ``<name>.data`` beside it (as torch 2.13 does)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{path.name}.data", size_threshold=0)
    return path


def _save(nodes: list, inputs: list, outputs: list, inits: list, path: str | Path) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "zoo", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def batch_dependent_onnx(X: np.ndarray, y: np.ndarray, path: str | Path, *, num_classes: int,
                         batch: int = 4) -> Path:
    """A fixed-batch classifier whose rows depend on each other (features centred on the batch
    mean), so its batch dimension cannot be made dynamic safely."""
    from onnx import TensorProto, helper, numpy_helper

    flat = X.reshape(len(X), -1)
    clf = _fit_logistic(flat - flat.mean(axis=0), y)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "coef"], ["mm"], name="linear"),
        helper.make_node("Add", ["mm", "intercept"], ["logits"]),
    ]
    return _save(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *X.shape[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, num_classes])],
        [numpy_helper.from_array(clf.coef_.T.astype(np.float32), "coef"),
         numpy_helper.from_array(clf.intercept_.astype(np.float32), "intercept")], path)


def conv_only_onnx(path: str | Path, *, channels: int, num_classes: int, seed: int = 0) -> Path:
    """A classifier with no MatMul/Gemm (Conv, global pooling): MatMul-only methods have
    nothing to quantize in it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((num_classes, channels, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GlobalAveragePool", ["conv"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["logits"], axis=1),
    ]
    return _save(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(w, "w")], path)
