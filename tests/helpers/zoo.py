"""A tiny zoo of real-style architectures (torchvision shapes, small widths) for tests.

torchvision is not installable here (only a CUDA wheel exists for torch 2.13), so the
architectures are written out: MobileNetV3-style inverted residuals (depthwise conv,
squeeze-excitation, hardswish, BatchNorm momentum 0.01), a ResNet-style net of BasicBlocks,
a torchvision-style ViT (``nn.MultiheadAttention``, class token, ``self.hidden_dim`` used in
the forward) and a model that normalizes its own input. All are small enough to train on
digits in a few seconds on 2 cores.

Typical use::

    data = digits_3x32(size=16)               # digits upsampled to 3x16x16 (cheap)
    model = resnet_like()                     # vit_like(image_size=16, patch_size=4)
    fit(model, data, epochs=6)                # ~10 s each on a shared core: ~95-98 %
    accuracy(model, data.X_test, data.y_test) # vit_like ~87-89 % after 8 epochs
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BN_MOMENTUM = 0.01  # torchvision's MobileNetV3 value: running stats move slowly


# ----------------------------------------------------------------------------- data

def upsample_images(X: np.ndarray, *, size: int = 32, channels: int = 3) -> np.ndarray:
    """``(N, 1, h, w)`` images -> ``(N, channels, size, size)`` float32 (bilinear, repeated)."""
    t = torch.from_numpy(np.asarray(X, dtype=np.float32))
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.repeat(1, channels, 1, 1).numpy().astype(np.float32)


def digits_3x32(*, size: int = 32, seed: int = 0) -> Any:
    """The built-in digits data set with every split upsampled to ``3 x size x size``
    (in memory: a run folder written from it cannot reload it; use ``digits_npz`` then)."""
    from core.data import load_dataset

    ds = load_dataset("digits", seed=seed)
    return dataclasses.replace(
        ds, name=f"digits{size}",
        X_train=upsample_images(ds.X_train, size=size),
        X_val=upsample_images(ds.X_val, size=size),
        X_test=upsample_images(ds.X_test, size=size),
    )


def digits_npz(path: Any, *, size: int = 16, seed: int = 0) -> Any:
    """Digits upsampled to ``3 x size x size``, written to ``path`` (.npz) and loaded from it,
    so run folders record a data set that reloads (``digits_3x32``'s name does not)."""
    from core.data import load_dataset

    save_npz(digits_3x32(size=size, seed=seed), path)
    return load_dataset(str(path), seed=seed)


def save_npz(data: Any, path: Any) -> None:
    """All splits of ``data`` as one user ``.npz`` (``X``, ``y``) for CLI tests."""
    X = np.concatenate([data.X_train, data.X_val, data.X_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    np.savez(path, X=X, y=y)


# ----------------------------------------------------------------------------- MobileNetV3

def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.Hardswish) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM, eps=0.001),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision's SE block: pool, 1x1 reduce, ReLU, 1x1 expand, hardsigmoid, scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(F.relu(self.fc1(self.avgpool(x))))
        return x * F.hardsigmoid(s)


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise kxk, optional SE, project 1x1; residual when shapes allow."""

    def __init__(self, cin: int, expanded: int, cout: int, *, kernel: int = 3, stride: int = 1,
                 se: bool = True, act: type[nn.Module] = nn.Hardswish) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, act=act))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, max(8, expanded // 4)))
        layers.append(_conv_bn_act(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV3Like(nn.Module):
    """A MobileNetV3-small-shaped classifier at a tiny width."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn_act(in_channels, w, 3, stride=2),
            InvertedResidual(w, w, w, stride=1, se=True, act=nn.ReLU),
            InvertedResidual(w, 4 * w, int(1.5 * w), stride=2, se=False, act=nn.ReLU),
            InvertedResidual(int(1.5 * w), 4 * w, int(1.5 * w), stride=1, se=True),
            InvertedResidual(int(1.5 * w), 4 * w, 2 * w, kernel=5, stride=2, se=True),
            _conv_bn_act(2 * w, 6 * w, 1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(6 * w, 8 * w), nn.Hardswish(), nn.Dropout(0.2),
            nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_like(num_classes: int = 10, *, in_channels: int = 3,
                      width: int = 8) -> nn.Module:
    """MobileNetV3-style net: depthwise convs, SE, hardswish, BatchNorm momentum 0.01."""
    return MobileNetV3Like(num_classes, in_channels, width)


# ----------------------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 conv-BN, identity or 1x1 downsample skip."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetLike(nn.Module):
    """A ResNet-18-shaped classifier: stem, stages of BasicBlocks, global pool, fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 widths: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 2, 1, bias=False)  # stride-2 stem
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


def resnet_like(num_classes: int = 10, *, in_channels: int = 3,
                widths: tuple[int, ...] = (8, 16, 32)) -> nn.Module:
    """ResNet-style net of BasicBlocks with skip connections (stride-2 stages)."""
    return ResNetLike(num_classes, in_channels, widths)


# ----------------------------------------------------------------------------- ViT

class EncoderBlock(nn.Module):
    """torchvision's ViT EncoderBlock: LN, nn.MultiheadAttention, residual, LN, MLP, residual."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.GELU(),
                                 nn.Linear(mlp_dim, hidden_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class ViTLike(nn.Module):
    """A torchvision-style VisionTransformer at a tiny size.

    Like torchvision's, the forward reshapes with ``self.hidden_dim`` and holds the class
    token and position embedding as bare ``nn.Parameter``s, which is what makes pruning its
    embedding dimension awkward.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 patch_size: int = 8, hidden_dim: int = 32, num_heads: int = 4,
                 mlp_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.layers = nn.Sequential(
            *[EncoderBlock(hidden_dim, num_heads, mlp_dim) for _ in range(num_layers)])
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.heads = nn.Linear(hidden_dim, num_classes)

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, -1)  # torchvision does exactly this
        return x.permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.ln(self.layers(x))
        return self.heads(x[:, 0])


def vit_like(num_classes: int = 10, *, in_channels: int = 3, image_size: int = 32,
             patch_size: int = 8, hidden_dim: int = 32, num_heads: int = 4) -> nn.Module:
    """torchvision-style ViT: conv patch embedding, class token, nn.MultiheadAttention blocks."""
    return ViTLike(num_classes, in_channels, image_size, patch_size, hidden_dim, num_heads,
                   mlp_dim=2 * hidden_dim)


# ----------------------------------------------------------------------------- normalize inside

class NormalizedInside(nn.Module):
    """A small CNN whose first op is ``(x - mean) / std`` with fixed buffers (a common habit)."""

    def __init__(self, num_classes: int, in_channels: int, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), float(mean)))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), float(std)))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def normalized_inside(num_classes: int = 10, *, in_channels: int = 1, mean: float = 0.3,
                      std: float = 0.4) -> nn.Module:
    """A model that normalizes its own input; defaults suit the studio's digits (pixels / 16).

    Re-standardizing the input before the model sees it (global mean/std) changes what it
    sees, so its accuracy drops unless the data go in as given.
    """
    return NormalizedInside(num_classes, in_channels, mean, std)


ZOO = {
    "mobilenet_v3_like": mobilenet_v3_like,
    "resnet_like": resnet_like,
    "vit_like": vit_like,
}


# ----------------------------------------------------------------------------- training

def fit(model: nn.Module, data: Any, *, epochs: int = 4, lr: float = 3e-3,
        batch_size: int = 64, rows: int | None = None, seed: int = 0) -> nn.Module:
    """Train ``model`` in place with AdamW, then settle BatchNorm statistics; returns it.

    The final BN pass stands in for the long training a real model had: with momentum 0.01 a
    few dozen steps leave the running statistics near their initial values.
    """
    torch.manual_seed(seed)
    X = torch.from_numpy(np.asarray(data.X_train[:rows], dtype=np.float32))
    y = torch.from_numpy(np.asarray(data.y_train[:rows], dtype=np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    settle_batchnorm(model, X)
    return model.eval()


@torch.no_grad()
def settle_batchnorm(model: nn.Module, X: torch.Tensor, *, batch_size: int = 128) -> None:
    """Recompute every BatchNorm's running statistics as a cumulative average over ``X``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for chunk in X.split(batch_size):
        model(chunk)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on arrays."""
    model.eval()
    logits = model(torch.from_numpy(np.asarray(X, dtype=np.float32)))
    return float((logits.argmax(1).numpy() == np.asarray(y)).mean())


def count_params(model: nn.Module) -> int:
    """Number of parameters (all of them, zero or not)."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- sequences

def sequence_arrays(*, rows: int = 240, steps: int = 12, features: int = 4, classes: int = 3,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, separable (N, T, F) float32 task: class k is a sine of frequency k + 1 over
    the steps (phase and amplitude per feature random), feature 0 shifted by 0.5 k, plus
    noise; labels int64 0..classes-1."""
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % classes
    t = np.linspace(0, 2 * np.pi, steps, dtype=np.float64)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (rows, 1, features))
    amp = rng.uniform(0.5, 1.5, (rows, 1, features))
    X = amp * np.sin((y[:, None, None] + 1) * t + phase)
    X[:, :, 0] += 0.5 * y[:, None]
    X += rng.normal(0, 0.1, X.shape)
    return X.astype(np.float32), y.astype(np.int64)


class _LastStep(nn.Module):
    """A recurrent layer (GRU or LSTM, batch first) read at its last step, then a linear head."""

    def __init__(self, rnn: nn.Module, hidden: int, classes: int) -> None:
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class _Conv1dNet(nn.Module):
    """Conv1d over the steps (features as channels), mean over time, a linear head."""

    def __init__(self, features: int, classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(features, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv1d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x.transpose(1, 2)).mean(dim=2))


class _EncoderNet(nn.Module):
    """A linear embedding plus a learned position embedding, one TransformerEncoder layer
    (batch first), mean over time, a linear head."""

    def __init__(self, features: int, classes: int, width: int = 16, steps: int = 12) -> None:
        super().__init__()
        self.embed = nn.Linear(features, width)
        self.position = nn.Parameter(torch.randn(1, steps, width) * 0.1)
        layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.position).mean(dim=1))


def sequence_model(kind: str, *, features: int = 4, classes: int = 3, hidden: int = 16,
                   steps: int = 12, seed: int = 0) -> nn.Module:
    """A small seeded (N, T, F) classifier: 'gru', 'lstm', 'conv1d' or 'transformer'."""
    torch.manual_seed(seed)
    if kind in ("gru", "lstm"):
        rnn = (nn.GRU if kind == "gru" else nn.LSTM)(features, hidden, batch_first=True)
        return _LastStep(rnn, hidden, classes)
    if kind == "conv1d":
        return _Conv1dNet(features, classes, hidden)
    if kind == "transformer":
        return _EncoderNet(features, classes, hidden, steps)
    raise ValueError(f"unknown sequence model {kind!r}")


SEQUENCE_KINDS = ("gru", "lstm", "conv1d", "transformer")


def export_sequence_onnx(model: nn.Module, path: Any, example: torch.Tensor) -> Any:
    """``model`` as ONNX (opset 17, TorchScript exporter: ``dynamo=False``) with a dynamic
    batch axis, input 'x' (batch, T, F) and output 'logits' (batch, classes)."""
    model.eval()
    torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


# ----------------------------------------------------------------------------- EfficientNet

class SiLUSqueezeExcite(nn.Module):
    """EfficientNet's SE: global average pool, 1x1 reduce, SiLU, 1x1 expand, sigmoid, scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(self.avgpool(x)))))


class MBConv(nn.Module):
    """EfficientNet's MBConv: expand 1x1, depthwise kxk, SE (sigmoid gate), project 1x1."""

    def __init__(self, cin: int, cout: int, *, expand: int = 4, kernel: int = 3,
                 stride: int = 1, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            _conv_bn_act(cin, mid, 1, act=act),
            _conv_bn_act(mid, mid, kernel, stride, groups=mid, act=act),
            SiLUSqueezeExcite(mid, max(4, cin // 4)),
            _conv_bn_act(mid, cout, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class EfficientNetLike(nn.Module):
    """An EfficientNet-B0-shaped classifier at a tiny width (SiLU, one Hardswish stage)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn_act(in_channels, w, 3, stride=2, act=nn.SiLU),
            MBConv(w, w, expand=1),
            MBConv(w, 2 * w, stride=2),
            MBConv(2 * w, 2 * w, kernel=5),
            MBConv(2 * w, 3 * w, stride=2, act=nn.Hardswish),
            _conv_bn_act(3 * w, 8 * w, 1, act=nn.SiLU))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_like(num_classes: int = 10, *, in_channels: int = 3,
                      width: int = 8) -> nn.Module:
    """EfficientNet-style net: MBConv (depthwise), SiLU/Hardswish, SE with a sigmoid gate."""
    return EfficientNetLike(num_classes, in_channels, width)


# ----------------------------------------------------------------------------- ConvNeXt

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's: permute, norm, back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """torchvision's ConvNeXt block: 7x7 depthwise, NHWC LayerNorm, Linear 4x, GELU, Linear,
    layer scale (a bare per-channel parameter), residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class ConvNeXtLike(nn.Module):
    """A ConvNeXt-T-shaped classifier at a tiny size: patchify stem, two stages, LN head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 dims: tuple[int, int] = (16, 32), layer_scale: float = 0.1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 2, 2),
                                  LayerNorm2d(dims[0], eps=1e-6))
        self.stage1 = CNBlock(dims[0], layer_scale)
        self.downsample = nn.Sequential(LayerNorm2d(dims[0], eps=1e-6),
                                        nn.Conv2d(dims[0], dims[1], 2, 2))
        self.stage2 = CNBlock(dims[1], layer_scale)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(1), nn.LayerNorm(dims[1], eps=1e-6),
                                  nn.Linear(dims[1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.downsample(self.stage1(self.stem(x))))
        return self.head(self.avgpool(x))


def convnext_like(num_classes: int = 10, *, in_channels: int = 3,
                  dims: tuple[int, int] = (16, 32), layer_scale: float = 0.1) -> nn.Module:
    """ConvNeXt-style net: 7x7 depthwise, channels-last LayerNorm, GELU, layer scale.

    torchvision starts the layer scale at 1e-6; 0.1 lets a few epochs on digits train it.
    """
    return ConvNeXtLike(num_classes, in_channels, dims, layer_scale)


# ----------------------------------------------------------------------------- recurrent

class BiRNNClassifier(nn.Module):
    """A 2-layer bidirectional LSTM or GRU over (N, T, F), classified from the last layer's
    final hidden states of both directions (``h_n``, not the output sequence)."""

    def __init__(self, kind: str, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn(features, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(x)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h_n, c_n)
        return self.head(torch.cat([h[-2], h[-1]], dim=1))


def birnn_classifier(kind: str = "lstm", *, features: int = 4, hidden: int = 16,
                     classes: int = 3, seed: int = 0) -> nn.Module:
    """A seeded 2-layer bidirectional 'lstm' or 'gru' classifier over (N, T, F)."""
    torch.manual_seed(seed)
    return BiRNNClassifier(kind, features, hidden, classes)


# ----------------------------------------------------------------------------- tokens

def token_arrays(*, rows: int = 300, steps: int = 16, vocab: int = 50, classes: int = 3,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded int64 (N, T) token-id task: each class draws half its tokens from its own
    block of the vocabulary (id 0 is never drawn), the rest anywhere; labels int64."""
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % classes
    block = (vocab - 1) // classes
    own = 1 + y[:, None] * block + rng.integers(0, block, (rows, steps))
    anywhere = rng.integers(1, vocab, (rows, steps))
    X = np.where(rng.random((rows, steps)) < 0.5, own, anywhere)
    return X.astype(np.int64), y.astype(np.int64)


class TokenClassifier(nn.Module):
    """``nn.Embedding`` over int64 token ids (N, T), mean over the tokens, an MLP head."""

    def __init__(self, vocab: int, dim: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).mean(dim=1))


def token_classifier(*, vocab: int = 50, dim: int = 16, classes: int = 3,
                     seed: int = 0) -> nn.Module:
    """A seeded embedding-bag-style classifier whose input is int64 token ids."""
    torch.manual_seed(seed)
    return TokenClassifier(vocab, dim, classes)


# ----------------------------------------------------------------------------- round 4

class KeywordSpotter(nn.Module):
    """A KWS-style Conv1d net over (N, C, T): Conv1d-BN1d-ReLU blocks, global average pool
    over time, a linear head."""

    def __init__(self, channels: int, classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(channels, width, 3, padding=1, bias=False), nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, padding=1, bias=False), nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def keyword_spotter(*, channels: int = 8, classes: int = 10, width: int = 32,
                    seed: int = 0) -> nn.Module:
    """A seeded Conv1d keyword-spotting-style classifier over (N, channels, T)."""
    torch.manual_seed(seed)
    return KeywordSpotter(channels, classes, width)


def digits_sequence_npz(path: Any, *, seed: int = 0) -> Any:
    """Digits as (N, 8, 8) sequences (rows as channels, columns as time) in a user .npz,
    loaded without an added channel axis."""
    from core.data import load_dataset

    ds = load_dataset("digits", seed=seed)
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test]).reshape(-1, 8, 8)
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    np.savez(path, X=X.astype(np.float32), y=y)
    return load_dataset(str(path), seed=seed, channel_axis=False)


class NormActCNN(nn.Module):
    """A CNN with GroupNorm and InstanceNorm (affine) and PReLU / LeakyReLU / Mish."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.GroupNorm(4, w), nn.PReLU(w),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * w, affine=True),
            nn.LeakyReLU(0.1),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.Mish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def norm_act_cnn(num_classes: int = 10, *, in_channels: int = 3, width: int = 16) -> nn.Module:
    """GroupNorm / InstanceNorm CNN with PReLU, LeakyReLU and Mish activations."""
    return NormActCNN(num_classes, in_channels, width)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1, 1x1-3x3, 1x1-5x5, maxpool-1x1) concatenated on channels."""

    def __init__(self, cin: int, branch: int) -> None:
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(cin, branch, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(cin, branch, 1), nn.ReLU(),
                                nn.Conv2d(branch, branch, 3, padding=1), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(cin, branch, 1), nn.ReLU(),
                                nn.Conv2d(branch, branch, 5, padding=2), nn.ReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, branch, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class InceptionAux(nn.Module):
    """An Inception-style net with an auxiliary classifier: returns (logits, aux_logits)."""

    def __init__(self, num_classes: int, in_channels: int, branch: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 2, 1), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.block1 = InceptionBlock(16, branch)
        self.block2 = InceptionBlock(4 * branch, branch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * branch, num_classes)
        self.aux = nn.Linear(4 * branch, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.block1(self.stem(x))
        aux = self.aux(torch.flatten(self.pool(x1), 1))
        return self.fc(torch.flatten(self.pool(self.block2(x1)), 1)), aux


def inception_aux(num_classes: int = 10, *, in_channels: int = 3, branch: int = 8) -> nn.Module:
    """Inception-style branches joined by torch.cat, two outputs (logits, aux logits)."""
    return InceptionAux(num_classes, in_channels, branch)


class UNetClassifier(nn.Module):
    """A UNet-ish encoder-decoder (MaxPool down, Upsample and ConvTranspose up, skip concat)
    ending in a classification head."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU())
        self.enc1, self.enc2 = block(in_channels, w), block(w, 2 * w)
        self.mid = block(2 * w, 4 * w)
        self.down = nn.MaxPool2d(2)
        self.up1 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec1 = block(4 * w, 2 * w)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = block(2 * w + w, w)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.down(e1))
        m = self.mid(self.down(e2))
        d1 = self.dec1(torch.cat([self.up1(m), e2], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d1), e1], dim=1))
        return self.head(d2)


def unet_classifier(num_classes: int = 10, *, in_channels: int = 3, width: int = 8) -> nn.Module:
    """UNet-ish encoder-decoder with skip concatenation and a classification head."""
    return UNetClassifier(num_classes, in_channels, width)


class LogSoftmaxCNN(nn.Module):
    """A small CNN whose output is log_softmax (log-probabilities, NLLLoss-style)."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(0.3), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.body(x), dim=1)


def log_softmax_cnn(num_classes: int = 10, *, in_channels: int = 3) -> nn.Module:
    """A CNN ending in log_softmax, with a Dropout that an eval-mode export drops."""
    return LogSoftmaxCNN(num_classes, in_channels)


class ChannelsLastInput(nn.Module):
    """A Keras-style model fed (N, H, W, C): it transposes to NCHW first, then a small CNN."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 3, 1, 2))


def channels_last_input(num_classes: int = 10, *, in_channels: int = 3) -> nn.Module:
    """A classifier whose input is NHWC (Transpose to NCHW at its start)."""
    return ChannelsLastInput(num_classes, in_channels)


def nhwc_npz(data: Any, path: Any) -> None:
    """All splits of an NCHW ``data`` as one NHWC user ``.npz`` (``X``, ``y``)."""
    X = np.concatenate([data.X_train, data.X_val, data.X_test]).transpose(0, 2, 3, 1)
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    np.savez(path, X=np.ascontiguousarray(X), y=y)


def onnx_to_float16(src: Any, dst: Any) -> Any:
    """``src`` with FLOAT16 weights, input and outputs, converted as users convert
    (onnxruntime.transformers' ``convert_float_to_float16``, I/O types not kept)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=False)
    onnx.save(model, str(dst))
    return dst


def save_torch_file(model: Any, x: Any, path: Any) -> Any:
    """``model`` saved as users save it: TorchScript (traced) for ``.pt``, a ``torch.export``
    program with an automatic batch dimension for ``.pt2``; returns ``path``."""
    import torch

    if str(path).endswith(".pt"):
        torch.jit.save(torch.jit.trace(model, x), str(path))
    else:
        torch.export.save(torch.export.export(
            model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},)), str(path))
    return path
