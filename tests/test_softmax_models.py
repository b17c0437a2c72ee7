"""ONNX models that end in Softmax (Keras/tf2onnx export probabilities) train as well as their
logits twins: the converted module gives log-probabilities while training, so cross-entropy is
the logits' own, and the shipped model still ends in Softmax."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from core.artifacts import load_model, onnx_to_torch
from core.distillation._config import DistillConfig
from core.distillation._methods import Setup, SoftTarget
from core.distillation._student import onnx_student
from core.measure import ort_session
from core.pruning import PruningConfig, prune
from tests.conftest import FAST_MEASURE as FAST
from tests.helpers import onnx_zoo


class _Probabilities(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


@pytest.fixture(scope="module")
def twins(tmp_path_factory, digits):
    """One small trained CNN exported twice: as logits, and ending in Softmax."""
    torch.manual_seed(0)
    net = onnx_zoo.train_tiny(onnx_zoo.tiny_net(), digits.X_train, digits.y_train, epochs=3)
    folder = tmp_path_factory.mktemp("twins")
    example = torch.from_numpy(digits.X_test[:1])
    logits = onnx_zoo.export_default(net.eval(), folder / "logits.onnx", example)
    probs = onnx_zoo.export_default(_Probabilities(net).eval(), folder / "probs.onnx", example)
    return logits, probs, digits


def test_training_loss_of_a_softmax_model_is_its_logits_cross_entropy(twins):
    logits_file, probs_file, data = twins
    x, y = torch.from_numpy(data.X_train[:64]), torch.from_numpy(data.y_train[:64])
    losses, grads = [], []
    for path in (logits_file, probs_file):
        module = onnx_to_torch(path).train()
        loss = F.cross_entropy(module(x), y)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in module.parameters()]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(grads[1], grads[0], atol=1e-6)
    module = onnx_to_torch(probs_file).eval()  # the user's output where it is used
    with torch.no_grad():
        assert torch.allclose(module(x).sum(1), torch.ones(64), atol=1e-5)


def test_pruned_softmax_model_recovers_like_its_logits_twin_and_ships_softmax(twins, tmp_path):
    logits_file, probs_file, data = twins
    cfg = PruningConfig(method="structured-l2", sparsity=0.7, finetune_epochs=2, seed=0)
    acc = {}
    for name, path in (("logits", logits_file), ("probs", probs_file)):
        report = prune(path, data, cfg, out_dir=tmp_path / name, measure_options=FAST).report
        acc[name] = report["result"]["accuracy"]
        assert report["pruning"]["accuracy_before_finetune"] < acc[name]  # fine-tune helped
    assert abs(acc["probs"] - acc["logits"]) <= 0.02
    shipped = onnx.load(str(tmp_path / "probs" / "model.onnx"))
    producer = {o: n for n in shipped.graph.node for o in n.output}
    assert producer[shipped.graph.output[0].name].op_type == "Softmax"
    assert onnx_zoo.ort_accuracy(tmp_path / "probs", data.X_test, data.y_test) == \
        pytest.approx(acc["probs"], abs=1e-9)
    scores = ort_session(str(tmp_path / "probs" / "model.onnx")).run(
        None, {shipped.graph.input[0].name: data.X_test[:1]})[0]
    assert np.allclose(scores.sum(1), 1.0, atol=1e-5)


def test_soft_targets_of_a_softmax_teacher_are_those_of_its_logits(twins):
    logits_file, probs_file, data = twins
    targets = []
    for path in (logits_file, probs_file):
        method = SoftTarget(Setup(teacher=ort_session(str(path)), student=None, data=data,
                                  config=DistillConfig(temperature=4.0),
                                  transfer=SimpleNamespace(X=data.X_train[:200])))
        method.prepare(SimpleNamespace(progress=lambda *a, **k: None))
        targets.append(method.teacher_probs(None, torch.arange(200)))
    assert targets[1].max() < 0.9  # softened, not the teacher's near one-hot probabilities
    assert torch.allclose(targets[1], targets[0], atol=1e-4)


class _MatMulNet(torch.nn.Module):
    """A weight held as a graph constant (a rank-3 ONNX MatMul, which stays one; a rank-2
    MatMul by a constant becomes nn.Linear), then a Linear layer (Gemm)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(64, 16) * 0.1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu((x.flatten(2) @ self.w).flatten(1)))


def test_width_one_student_says_which_weights_start_from_the_teacher(digits, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "matmul.onnx"
    torch.onnx.export(_MatMulNet().eval(), (torch.from_numpy(digits.X_test[:2]),), str(path),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    teacher = onnx_to_torch(path)
    student, how = onnx_student(load_model(path), digits, width=1.0, depth=1.0, seed=0)
    same = sum(p.numel() for p, t in zip(student.parameters(), teacher.parameters())
               if torch.equal(p, t))
    total = sum(p.numel() for p in student.parameters())
    assert same == 64 * 16  # the MatMul weight is the teacher's, the Linear layer is new
    assert f"{total - same:,} of its {total:,} weights freshly initialized" in how
    assert f"the other {same:,}" in how and "start from the teacher's" in how
