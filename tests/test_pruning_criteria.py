"""Each pruning criterion removes what it claims to, on one hand-built model where they differ.

The hidden layer of an MLP on wine has four neurons whose weights are set by hand:
  0: one weight of 3            (L1 3.1, L2 9)   -> the smallest by L1
  1: eight weights of 0.5       (L1 4.1, L2 2)   -> the smallest by L2
  2: thirteen weights of 2      (L1 26, L2 52)   (the other weights are 0.01)
  3: thirteen weights of 2.5, but the classifier ignores it (zero column): no gradient, so
     Taylor importance (|weight x gradient|) is zero -> the first one Taylor removes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

FAST = {"budget_s": 0.01, "memory": False}


@pytest.fixture(scope="module")
def wine():
    from core.data import load_dataset

    return load_dataset("wine")


def _model(wine):
    from core.models import model_for_data

    model = model_for_data("mlp", wine.input_shape, wine.num_classes, hidden_dims=[4])
    hidden, head = model.features[1], model.classifier
    w = torch.full((4, hidden.in_features), 0.01)  # no exact zeros: no ties at the bottom
    w[0, 0] = 3.0
    w[1, :8] = 0.5
    w[2, :] = 2.0
    w[3, :] = 2.5
    column = torch.tensor([0.1, -0.1, 0.05])  # varied across classes: a real gradient
    with torch.no_grad():
        hidden.weight.copy_(w)
        hidden.bias.zero_()
        head.weight.copy_(torch.stack([column, column, column, torch.zeros(3)], dim=1))
        head.bias.zero_()
    return model


def _pruned(wine, tmp_path, method: str, **options):
    from core.artifacts import load_model
    from core.pruning import PruningConfig, prune

    cfg = PruningConfig(method=method, finetune_epochs=0, **options)
    out = tmp_path / method
    prune(_model(wine), wine, cfg, out_dir=out, measure_options=FAST)
    return load_model(out).model.features[1].weight.detach()


def _removed_neuron(before: torch.Tensor, after: torch.Tensor) -> int:
    kept = [i for i in range(len(before)) if any(torch.equal(before[i], r) for r in after)]
    assert len(after) == 3 and len(kept) == 3
    return next(i for i in range(len(before)) if i not in kept)


@pytest.mark.parametrize(("method", "removed"), [
    ("structured-l1", 0), ("structured-l2", 1), ("structured-taylor", 3)])
def test_structured_criteria_remove_different_neurons(method, removed, wine, tmp_path):
    before = _model(wine).features[1].weight.detach()
    after = _pruned(wine, tmp_path, method, sparsity=0.25)
    assert _removed_neuron(before, after) == removed


def test_unstructured_criteria_zero_different_weights(wine, tmp_path):
    before = _model(wine).features[1].weight.detach()
    masks = {m: (_pruned(wine, tmp_path, m, sparsity=0.5, seed=s) == 0).numpy()
             for m, s in [("l1-unstructured", 0), ("random-unstructured", 0),
                          ("taylor-unstructured", 0)]}
    # L1: the zeroed weights are exactly the smallest by magnitude (half of the layer)
    order = np.argsort(before.abs().numpy().ravel(), kind="stable")
    l1 = masks["l1-unstructured"].ravel()
    assert l1.sum() == before.numel() // 2
    assert np.abs(before.numpy().ravel()[l1]).max() <= np.abs(
        before.numpy().ravel()[order[before.numel() // 2:]]).min()
    # Taylor: neuron 3's large weights (no gradient) go; L1 keeps them
    assert masks["taylor-unstructured"][3].all() and not l1.reshape(before.shape)[3].any()
    # Random: a mask unlike both, and another seed draws another one
    assert not np.array_equal(masks["random-unstructured"], masks["l1-unstructured"])
    assert not np.array_equal(masks["random-unstructured"], masks["taylor-unstructured"])
    other = (_pruned(wine, tmp_path / "s1", "random-unstructured", sparsity=0.5, seed=1) == 0)
    assert not np.array_equal(other.numpy(), masks["random-unstructured"])
