"""Classification metrics on a split of a data set."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.measure._predictor import predict_logits


@dataclass(frozen=True)
class Metrics:
    """Accuracy, macro F1/precision/recall and mean cross-entropy on one split."""

    accuracy: float
    f1_macro: float
    precision_macro: float
    recall_macro: float
    loss: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics_from_logits(logits: np.ndarray, y: np.ndarray) -> Metrics:
    """Metrics from logits and integer labels."""
    if len(y) == 0:
        return Metrics(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)
    if logits.ndim != 2 or logits.shape[1] <= int(np.max(y)):
        _refuse_fewer_scores(logits, int(np.max(y)))
    pred = logits.argmax(axis=1)
    p, r, f = _macro_prf(np.asarray(y, dtype=np.int64), pred.astype(np.int64))
    if _are_probabilities(logits):  # e.g. sklearn-onnx's 'probabilities' output
        log_probs = np.log(np.clip(logits, 1e-12, 1.0))
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    return Metrics(float((pred == y).mean()), float(f), float(p), float(r), loss, int(len(y)))


def _refuse_fewer_scores(logits: np.ndarray, top: int) -> None:
    """One clear error for a model with fewer score columns than the data's classes."""
    from core.errors import UnsupportedModelError

    if logits.ndim == 2 and logits.shape[1] == 1 and top == 1:
        raise UnsupportedModelError(
            "The model returns one score per row (a binary classifier's logit or sigmoid "
            "probability); the studio scores one column per class, [batch, 2]. Export the two "
            "columns, e.g. torch.cat([0 * z, z], 1) for a logit z or torch.cat([1 - p, p], 1) for "
            "a probability p.")
    raise UnsupportedModelError(
        f"The model returns {list(logits.shape[1:])} scores per row, but the data's labels "
        f"go up to class {top}: it needs one score per class ([batch, {top + 1}] or more). "
        "Integer labels are class indices; if the model's scores follow the sorted labels "
        "(scikit-learn), relabel them 0..K-1.")


def _macro_prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Macro precision, recall and F1 over the labels in ``y`` or ``pred`` (0 where undefined),
    as scikit-learn's ``precision_recall_fscore_support(average="macro", zero_division=0)``;
    by hand because importing scikit-learn costs ~1.5 s per command."""
    labels = np.union1d(y, pred)
    index = np.searchsorted(labels, y), np.searchsorted(labels, pred)
    conf = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(conf, index, 1)
    tp = np.diag(conf).astype(np.float64)
    predicted, actual = conf.sum(axis=0), conf.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def _are_probabilities(scores: np.ndarray) -> bool:
    """Rows in [0, 1] that sum to 1: probabilities, not logits."""
    return bool(scores.size and scores.min() >= 0 and scores.max() <= 1
                and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))


def evaluate(model: Any, data: Any, split: str = "test", *, batch_size: int = 256) -> Metrics:
    """Metrics of a module, ORT session or ``.onnx`` path on one split of a Dataset."""
    X, y = data.split(split)
    return metrics_from_logits(predict_logits(model, X, batch_size=batch_size), y)
