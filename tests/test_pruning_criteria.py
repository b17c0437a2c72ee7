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


# --- criteria as importance objects, on one conv layer -------------------------------------------
def _conv_net() -> torch.nn.Module:
    """Conv 1→4 (3×3) → ReLU → pool → Linear 4→3, with hand-set kernels:
    channel 0: one weight of 3 (smallest L1); 1: eight of 0.5 (smallest L2); 2: all 2;
    3: all 2.5 but the head ignores it (zero column: no gradient, zero Taylor importance)."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    k = torch.full((4, 1, 3, 3), 0.01)
    k[0, 0, 0, 0] = 3.0
    k[1].view(-1)[:8] = 0.5
    k[2] = 2.0
    k[3] = 2.5
    column = torch.tensor([0.1, -0.1, 0.05])
    with torch.no_grad():
        net[0].weight.copy_(k)
        net[0].bias.zero_()
        net[4].weight.copy_(torch.stack([column, column, column, torch.zeros(3)], dim=1))
        net[4].bias.zero_()
    return net


def _removed_channel(method: str, seed: int = 0) -> int:
    from types import SimpleNamespace

    from core.pruning import PruningConfig
    from core.pruning._structured import StructuredPruner, taylor_gradients

    rng = np.random.default_rng(0)
    data = SimpleNamespace(X_train=rng.random((32, 1, 5, 5), dtype=np.float32),
                           y_train=rng.integers(0, 3, 32))
    net = _conv_net()
    before = net[0].weight.detach().clone()
    cfg = PruningConfig(method=method, sparsity=0.25, finetune_epochs=0, seed=seed)
    StructuredPruner(net, torch.from_numpy(data.X_train[:2]), cfg,
                     taylor_gradients(data, cfg)).step(data)
    after = net[0].weight.detach()
    assert after.shape[0] == 3  # one of four channels removed, the head follows
    kept = [i for i in range(4) if any(torch.equal(before[i], row) for row in after)]
    return next(i for i in range(4) if i not in kept)


def test_l1_l2_taylor_random_remove_different_conv_channels():
    assert _removed_channel("structured-l1") == 0
    assert _removed_channel("structured-l2") == 1
    assert _removed_channel("structured-taylor") == 3
    drawn = {_removed_channel("structured-random", seed) for seed in range(8)}
    assert len(drawn) >= 2  # seeded draws, not a fixed ranking
    assert _removed_channel("structured-random", 5) == _removed_channel("structured-random", 5)


def test_a_new_criterion_is_one_class():
    """A class registered with @criterion is a method: the config, registry and loop take it."""
    from core.pruning import PruningConfig, StructuredCriterion, criterion, method_names
    from core.pruning._criteria import tp_module
    from core.registry import _REGISTRY, get_method

    @criterion
    class Fpgm(StructuredCriterion):
        name = "structured-fpgm-test"
        summary = "Geometric-median criterion (Torch-Pruning FPGMImportance)."

        def importance(self, cfg):
            return tp_module().importance.FPGMImportance()

    try:
        assert "structured-fpgm-test" in method_names(structured=True)
        assert get_method("pruning", "structured-fpgm-test").summary.startswith("Geometric")
        assert PruningConfig(method="structured-fpgm-test").structured
        assert _removed_channel("structured-fpgm-test") in range(4)
    finally:
        _REGISTRY["pruning"].pop("structured-fpgm-test", None)
