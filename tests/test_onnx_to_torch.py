"""ONNX in, full toolbox out: an uploaded ONNX model becomes a trainable, prunable torch module,
and what comes back out is ONNX that agrees with it."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from core.artifacts import (
    check_parity,
    export_checked,
    load_model,
    onnx_to_torch,
    trainable_module,
)
from core.artifacts._convert_modules import FixedBatch
from core.errors import StudioError, UnsupportedModelError

TOL = 1e-4


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.conv3, self.bn3 = nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        x = torch.relu(self.down(x) + self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, channels // 4, 1), \
            nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.expand(torch.relu(self.reduce(s))))


class MobileBlock(nn.Module):
    """MobileNetV3-style: hardswish, depthwise conv, squeeze-excitation, BN momentum 0.01."""

    def __init__(self) -> None:
        super().__init__()

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, momentum=0.01)

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), bn(16), nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), bn(32), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False),
                                       bn(32), nn.Hardswish())
        self.se = SqueezeExcite(32)
        self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), bn(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32),
                                  nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(x + self.project(self.se(self.depthwise(self.expand(x)))))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16),
                                 nn.Tanh(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyViT(nn.Module):
    """Patch embedding, class token, nn.MultiheadAttention, LayerNorm, GELU."""

    def __init__(self, dim: int = 32, heads: int = 4, patch: int = 4, image: int = 16) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.ln1, self.ln2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.norm(x)[:, 0])


ZOO = {"convnet": (ConvNet, (1, 8, 8)), "residual": (Residual, (3, 16, 16)),
       "mobile": (MobileBlock, (3, 16, 16)), "mlp": (MLP, (1, 8, 8)),
       "vit": (TinyViT, (3, 16, 16))}


def _model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A ZOO model in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    cls, shape = ZOO[name]
    model = cls().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model, shape


def _export(model: nn.Module, shape: tuple[int, ...], path, *, how: str, batch: int = 4):
    """``how``: 'dynamo' (torch 2.13's default: opset 18+, external data, fixed batch),
    'legacy-fixed' (dynamo=False, fixed batch) or 'legacy-dynamic' (dynamic batch axis)."""
    x = torch.randn(batch, *shape)
    kwargs = {"dynamo": {"dynamo": True},
              "legacy-fixed": {"dynamo": False},
              "legacy-dynamic": {"dynamo": False, "input_names": ["input"],
                                 "dynamic_axes": {"input": {0: "batch"}}}}[how]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # users' exports, legacy ones included: torch's deprecation notes are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (x,), str(path), **kwargs)
    return path


def _rows(shape: tuple[int, ...], n: int = 10) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, *shape)).astype(np.float32)


def _max_diff(a: nn.Module, b: nn.Module, X: np.ndarray) -> float:
    a.eval(), b.eval()
    with torch.inference_mode():
        return float((a(torch.from_numpy(X)) - b(torch.from_numpy(X))).abs().max())


@pytest.mark.parametrize("how", ["legacy-fixed", "legacy-dynamic"])
@pytest.mark.parametrize("name", list(ZOO))
def test_converted_model_matches_the_original_and_exports_back(name, how, tmp_path):
    model, shape = _model(name)
    path = _export(model, shape, tmp_path / "model.onnx", how=how)
    converted = onnx_to_torch(path)
    X = _rows(shape)  # 10 rows: not the exported batch of 4
    assert _max_diff(converted, model, X) < TOL
    assert check_parity(converted, path, X) < TOL
    back = export_checked(converted, tmp_path / "back.onnx", X)
    assert back.max_abs_diff < TOL
    assert check_parity(model, tmp_path / "back.onnx", X) < TOL


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """``get(name)``: the ZOO model exported the torch 2.13 default way, once per module."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            model, shape = _model(name)
            folder = tmp_path_factory.mktemp(name)
            cache[name] = _export(model, shape, folder / "model.onnx", how="dynamo")
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["convnet", "vit"])
def test_torch_default_export_with_external_data_converts(name, default_export, tmp_path):
    """torch 2.13's default export: opset 18+ (ReduceMean axes input, Reshape allowzero,
    Gelu), weights in model.onnx.data and the batch fixed at the example's size."""
    model, shape = _model(name)
    path = default_export(name)
    assert path.with_name("model.onnx.data").is_file()
    converted = onnx_to_torch(path)
    X = _rows(shape, n=7)
    assert _max_diff(converted, model, X) < TOL
    if name == "vit":  # the batch is baked into the attention's reshapes
        assert isinstance(converted, FixedBatch) and converted.batch == 4
        assert converted.vmap_works  # chunks ran at once; the one-by-one loop agrees
        converted.vmap_works = False
        assert _max_diff(converted, model, X) < TOL
    assert export_checked(converted, tmp_path / "back.onnx", X).max_abs_diff < TOL


@pytest.mark.parametrize("name", ["convnet", "vit"])
def test_converted_model_is_trainable(name, tmp_path):
    model, shape = _model(name)
    converted = onnx_to_torch(_export(model, shape, tmp_path / "m.onnx", how="legacy-fixed"))
    converted.train()
    converted(torch.from_numpy(_rows(shape))).square().mean().backward()
    weights = [m.weight for m in converted.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert weights and all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)
    if name == "vit":  # MatMul weights, LayerNorms and embeddings train too, not only Gemm
        params = dict(converted.named_parameters())
        assert sum(p.numel() for p in params.values()) == \
            sum(p.numel() for p in model.parameters())
        assert all(p.grad is not None for p in params.values())


def test_converted_model_fine_tunes_on_digits(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.from_numpy((digits.images / 16.0).astype(np.float32)[:, None])
    y = torch.from_numpy(digits.target.astype(np.int64))
    model, shape = _model("mlp")
    converted = onnx_to_torch(_export(model, shape, tmp_path / "m.onnx", how="legacy-fixed"))
    optimizer = torch.optim.Adam(converted.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    converted.eval()
    with torch.inference_mode():
        before = loss_fn(converted(X), y).item()
    converted.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        idx = torch.randint(0, len(X), (64,), generator=gen)
        optimizer.zero_grad()
        loss_fn(converted(X[idx]), y[idx]).backward()
        optimizer.step()
    converted.eval()
    with torch.inference_mode():
        after = loss_fn(converted(X), y).item()
        accuracy = (converted(X).argmax(1) == y).float().mean().item()
    assert after < 0.6 * before and accuracy > 0.6


@pytest.mark.parametrize("name,how", [("convnet", "dynamo"), ("residual", "legacy-fixed"),
                                      ("mobile", "legacy-dynamic")])
def test_converted_conv_net_is_structurally_prunable(name, how, default_export, tmp_path):
    import torch_pruning as tp

    model, shape = _model(name)
    path = default_export(name) if how == "dynamo" else \
        _export(model, shape, tmp_path / "m.onnx", how=how)
    converted = onnx_to_torch(path)
    before = sum(p.numel() for p in converted.parameters())
    example = torch.randn(2, *shape)
    last = [m for m in converted.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(converted, example, pruning_ratio=0.5,
                                  importance=tp.importance.MagnitudeImportance(p=2),
                                  ignored_layers=[last])
    pruner.step()
    after = sum(p.numel() for p in converted.parameters())
    assert after < 0.5 * before
    X = _rows(shape, n=5)
    assert converted(torch.from_numpy(X)).shape == (5, 10)
    assert export_checked(converted, tmp_path / "pruned.onnx", X).max_abs_diff < TOL


def test_converted_conv_net_is_ready_for_qat_and_torch_export(default_export):
    """Constant reshapes no longer read a tensor at run time: FX QAT (torch.ao) and
    torch.export (PT2E, the dynamo exporter) trace the converted module."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    _, shape = _model("convnet")
    converted = onnx_to_torch(default_export("convnet"))
    x = torch.from_numpy(_rows(shape, n=4))
    torch.export.export(converted.eval(), (x,))
    with warnings.catch_warnings():
        # torch.ao FX QAT is deprecated upstream; this checks the converted module still
        # traces through it, not the API's future
        warnings.simplefilter("ignore", DeprecationWarning)
        prepared = prepare_qat_fx(converted.train(), get_default_qat_qconfig_mapping("x86"),
                                  (x,))
        prepared(x).square().mean().backward()
        quantized = convert_fx(prepared.eval())
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized")
               for m in quantized.modules())
    assert quantized(x).shape == (4, 10)


def _graph_with(op: str, tmp_path) -> str:
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 10])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [10, 10], np.eye(10).ravel().tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["h"]),
                               helper.make_node(op, ["h"], ["scores"])], "g", [inp], [out], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_attention_operator_converts(tmp_path):
    """From opset 23 torch's exporter writes nn.MultiheadAttention's core as one Attention
    node; it becomes scaled_dot_product_attention."""
    model, shape = _model("vit")
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)  # a user's export: torch's notes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (torch.randn(2, *shape),), str(path), dynamo=True,
                          opset_version=23)
    assert "Attention" in {n.op_type for n in onnx.load(str(path)).graph.node}
    converted = onnx_to_torch(path)
    X = _rows(shape, n=5)
    assert _max_diff(converted, model, X) < TOL
    assert export_checked(converted, tmp_path / "back.onnx", X).max_abs_diff < TOL


def test_attention_features_without_a_torch_equivalent_are_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 3, 4])
    node = helper.make_node("Attention", ["x", "x", "x"], ["y"], softcap=30.0)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 23)])
    onnx.save(model, str(tmp_path / "softcap.onnx"))
    with pytest.raises(UnsupportedModelError, match="Attention with softcap"):
        onnx_to_torch(tmp_path / "softcap.onnx")


def test_unsupported_operator_is_one_clear_error(tmp_path):
    path = _graph_with("Hardmax", tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"Hardmax \(opset 17\)") as info:
        onnx_to_torch(path)
    assert isinstance(info.value, StudioError)
    assert str(tmp_path) not in str(info.value)  # no server paths in messages


def test_trainable_module_of_loaded_models(tmp_path):
    """An ONNX upload with a label output beside its scores trains on the scores; a torch
    model is its own module."""

    class WithLabel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = MLP()

        def forward(self, x: torch.Tensor):
            scores = self.net(x)
            return scores.argmax(1), scores

    torch.manual_seed(0)
    model = WithLabel().eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a user's export: torch's notes
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (torch.randn(2, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["input"], output_names=["label", "scores"],
                          dynamic_axes={"input": {0: "batch"}})
    loaded = load_model(path)
    module = trainable_module(loaded)
    X = torch.from_numpy(_rows((1, 8, 8)))
    with torch.inference_mode():
        got = module.eval()(X)
        assert torch.is_tensor(got) and got.is_floating_point()
        assert (got - model.net(X)).abs().max() < TOL
    builtin = type(loaded)(model.net, "builtin", (1, 8, 8), 10, tmp_path)
    assert trainable_module(builtin) is model.net


def test_a_conversion_that_is_not_exact_is_refused(tmp_path, monkeypatch):
    import core.artifacts._convert as convert

    model, shape = _model("mlp")
    path = _export(model, shape, tmp_path / "m.onnx", how="legacy-fixed")

    def off_by_a_little(module):  # stands in for a converter bug
        with torch.no_grad():
            next(module.parameters()).add_(0.01)

    monkeypatch.setattr(convert, "_float_initializers_trainable", off_by_a_little)
    with pytest.raises(UnsupportedModelError, match="disagrees with ONNX Runtime"):
        onnx_to_torch(path)


def test_parity_check_fails_loudly_after_a_change_that_should_be_exact(tmp_path):
    model, shape = _model("mlp")
    path = _export(model, shape, tmp_path / "m.onnx", how="legacy-dynamic")
    converted = onnx_to_torch(path)
    with torch.no_grad():
        [m for m in converted.modules() if isinstance(m, nn.Linear)][-1].bias.add_(1e-2)
    with pytest.raises(UnsupportedModelError, match="disagree by up to 0.01"):
        check_parity(converted, path, _rows(shape))
