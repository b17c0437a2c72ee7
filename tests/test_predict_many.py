"""Scoring several models at once gives each model's own logits, row for row."""

from __future__ import annotations

import numpy as np
import torch

from core.artifacts import export_onnx
from core.measure import ort_session, predict_logits, predict_many
from tests.helpers import onnx_zoo


def test_side_by_side_logits_equal_each_model_scored_alone(tmp_path, digits):
    torch.manual_seed(0)
    dynamic = tmp_path / "dynamic.onnx"
    export_onnx(onnx_zoo.tiny_net(10), dynamic, torch.from_numpy(digits.X_test[:2]))
    fixed = onnx_zoo.export_fixed_batch(onnx_zoo.tiny_net(10), tmp_path / "fixed.onnx",
                                        torch.from_numpy(digits.X_test[:3]))
    X = digits.X_test[:301]  # not a multiple of any batch or chunk size
    sessions = [ort_session(dynamic), ort_session(fixed)]
    together = predict_many(sessions, X)
    for session, logits in zip(sessions, together):
        alone = predict_logits(session, X)
        assert logits.shape == (301, 10)
        np.testing.assert_allclose(logits, alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0], together[1])  # each model's own, not one copied
