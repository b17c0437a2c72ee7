"""One rule for "the model takes the data's inputs and returns one logit per class", the same
in every verb that trains: one clear error naming the shapes, before any work."""

from __future__ import annotations

import pytest
from torch import nn

from core.errors import InvalidParameterError


def _run(verb: str, net: nn.Module, data, out) -> None:
    if verb == "train":
        from core.training import TrainConfig, train

        train(net, data, TrainConfig(epochs=1))
    elif verb == "prune":
        from core.pruning import PruningConfig, prune

        prune(net, data, PruningConfig(method="l1-unstructured", sparsity=0.5), out_dir=out)
    else:
        from core.continual import continual

        continual(net, None, {"n_tasks": 2, "epochs": 1}, out_dir=out)


@pytest.mark.parametrize("verb", ["train", "prune", "continual"])
@pytest.mark.parametrize("build, rule", [
    (lambda: nn.Linear(3, 10), r"able to take inputs of shape \[1, 8, 8\]"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), r"\(batch, 10\) logits"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_alike(verb, build, rule, digits,
                                                              tmp_path):
    with pytest.raises(InvalidParameterError, match=rule):
        _run(verb, build(), digits, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written
