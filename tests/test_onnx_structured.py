"""Structured pruning of an uploaded ONNX model: converted to torch (onnx2torch), channels really
removed, exported back to ONNX, and the shipped file scores as reported with onnxruntime alone.

The uploads here have the form torch 2.13's default ``torch.onnx.export(model, (x,), path)``
writes (batch fixed at 1, the classifier's input flattened by ``Reshape(allowzero=1)`` to a
constant ``[1, C]``, weights in ``model.onnx.data``); the dynamo exporter itself takes over a
minute per model on a loaded 2-core machine, so a fast legacy export is rewritten to that form.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from core.data import load_dataset
from tests.helpers import onnx_zoo, zoo

FAST = {"budget_s": 0.02, "memory": False}


def _as_default_export(path) -> None:
    """Flatten(axis=1) of a (1, C, H, W) tensor -> Reshape(x, [1, C*H*W], allowzero=1), as the
    dynamo exporter writes ``torch.flatten(x, 1)`` at batch 1; weights moved to .data."""
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in inferred.graph.value_info}
    for index, node in enumerate(list(model.graph.node)):
        if node.op_type != "Flatten":
            continue
        width = int(np.prod(dims[node.input[0]][1:]))
        target = f"{node.output[0]}_shape"
        model.graph.initializer.append(
            numpy_helper.from_array(np.array([1, width], dtype=np.int64), target))
        model.graph.node.remove(node)
        model.graph.node.insert(index, helper.make_node(
            "Reshape", [node.input[0], target], list(node.output), allowzero=1))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{path.name}.data", size_threshold=1024)  # torch's threshold


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _upload(net, data, folder, name: str):
    onnx_zoo.train_tiny(net, data.X_train, data.y_train, epochs=8)
    path = folder / f"{name}.onnx"
    onnx_zoo.export_fixed_batch(net, path, torch.from_numpy(data.X_test[:1]))
    _as_default_export(path)
    return path


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_structured_pruning_of_a_default_onnx_export_removes_channels(arch, digits,
                                                                      tmp_path):
    from core.pruning import PruningConfig, prune

    net = onnx_zoo.tiny_net() if arch == "cnn" else zoo.resnet_like(in_channels=1,
                                                                    widths=(8,))
    path = _upload(net, digits, tmp_path, arch)
    assert (tmp_path / f"{arch}.onnx.data").is_file()
    run = prune(path, digits, PruningConfig(method="structured-l2", sparsity=0.4,
                                            finetune_epochs=1),
                out_dir=tmp_path / "pruned", measure_options=FAST)
    base, res = run.report["baseline"], run.report["result"]
    assert res["params"] < 0.75 * base["params"]
    assert res["size_bytes"] < 0.8 * base["size_bytes"]  # the deployable ONNX bytes
    narrowed = [r for r in run.report["pruning"]["layers"] if r["width_after"] < r["width_before"]]
    assert narrowed, "no layer lost a channel"
    independent = onnx_zoo.ort_accuracy(tmp_path / "pruned", digits.X_test, digits.y_test)
    assert abs(independent - res["accuracy"]) <= 1e-3


def test_a_flattening_reshape_converts_to_a_batch_free_flatten(digits, tmp_path):
    """[-1, C*H*W] (a fixed-batch export made dynamic) computes flatten(x, 1): it becomes
    nn.Flatten, so the converted module runs at any batch and follows a narrower conv."""
    from core.artifacts._convert import onnx_to_torch

    net = onnx_zoo.tiny_net()
    path = tmp_path / "m.onnx"
    onnx_zoo.export_fixed_batch(net.eval(), path, torch.from_numpy(digits.X_test[:1]))
    _as_default_export(path)
    model = onnx.load(str(path))
    shape = next(i for i in model.graph.initializer if i.name.endswith("_shape"))
    shape.CopyFrom(numpy_helper.from_array(np.array([-1, 128], dtype=np.int64), shape.name))
    module = onnx_to_torch(model)
    assert any(isinstance(m, torch.nn.Flatten) for m in module.modules())
    X = torch.from_numpy(digits.X_test[:5])
    with torch.no_grad():
        assert torch.allclose(module.eval()(X), net(X), atol=1e-5)


def test_auto_prunes_with_each_models_own_finetune_defaults():
    """No --finetune-epochs: a pruned candidate's fine-tune is the model's (a ViT gets its 10
    epochs at a lower rate); a given number is kept."""
    from core.auto._candidates import propose
    from core.pruning import PruningConfig

    def prune_step(epochs):
        cands = propose({"isa": []}, family=None, finetune_epochs=epochs,
                        only=("prune50-ft-ort",))
        return cands[0].steps[0]["prune"]

    vit = zoo.vit_like(image_size=16, patch_size=4)
    cfg, record = PruningConfig.from_dict(prune_step(None)).for_model(vit)
    assert (cfg.finetune_epochs, cfg.lr) == (10, 0.002)
    assert record["chosen_for_model"]["finetune_epochs"] == 10
    cnn_cfg, _ = PruningConfig.from_dict(prune_step(None)).for_model(zoo.resnet_like())
    assert cnn_cfg.finetune_epochs == 5
    given, _ = PruningConfig.from_dict(prune_step(3)).for_model(vit)
    assert given.finetune_epochs == 3


def test_batchnorm_put_back_into_a_folded_graph_is_the_identity_and_folds_away(digits):
    """An exported (BN-folded) net converted to torch gets a BatchNorm after each conv for
    the fine-tune; unpruned it computes the same, and folding restores plain convs."""
    from core.pruning._onnx import add_batchnorm, fold_batchnorm, folded_graph

    net = zoo.resnet_like(in_channels=1, widths=(8,)).eval()
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(
        *[m for m in (net.conv1, net.relu, net.avgpool, torch.nn.Flatten(),
                      torch.nn.Linear(8, 10))]))
    X = torch.from_numpy(digits.X_test[:16])
    with torch.no_grad():
        before = gm(X)
    assert folded_graph(gm)
    assert add_batchnorm(gm, digits.X_train) == 1 and not folded_graph(gm)
    with torch.no_grad():
        assert torch.allclose(gm.eval()(X), before, atol=1e-4)
        gm.get_submodule("0_studio_bn").bias.add_(1.0)  # as a fine-tune would move it
        moved = gm(X)
    assert fold_batchnorm(gm) == 1 and folded_graph(gm)
    with torch.no_grad():
        assert torch.allclose(gm(X), moved, atol=1e-4)
