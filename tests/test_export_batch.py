"""A user's module whose forward writes the batch size as a number still exports with a dynamic
batch where ONNX Runtime verifies it, or is refused with the fix to make — never an ORT error."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from core.artifacts import export_onnx
from core.errors import UnsupportedModelError


class LenReshape(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(x.reshape(len(x), -1))  # traced as the constant 1


class LenFlatten(torch.nn.Module):
    def forward(self, x):
        return x.reshape(len(x) * 12)[:3].reshape(1, 3)  # the batch is in the arithmetic


def test_a_batch_written_as_a_number_is_made_dynamic(tmp_path):
    model = LenReshape().eval()
    X = np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32)
    diff = export_onnx(model, tmp_path / "m.onnx", torch.from_numpy(X[:1]), check_inputs=X)
    assert diff < 1e-5
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": X})[0]
    assert np.allclose(got, model(torch.from_numpy(X)).detach().numpy(), atol=1e-5)


def test_a_batch_that_cannot_be_freed_is_refused_with_the_fix(tmp_path):
    X = np.ones((4, 3, 4), np.float32)
    with pytest.raises(UnsupportedModelError, match="only at batch size 1.*reshape"):
        export_onnx(LenFlatten().eval(), tmp_path / "m.onnx", torch.from_numpy(X[:1]),
                    check_inputs=X)
    assert not (tmp_path / "m.onnx").exists()
