"""Built-in model families with explicit widths, so a pruned model is still family + widths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from core.errors import InvalidParameterError

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
_FAMILIES: dict[str, type[nn.Module]] = {}


def _family(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        _FAMILIES[name] = cls
        cls.family = name
        return cls

    return decorate


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise InvalidParameterError("activation", f"one of {sorted(_ACTIVATIONS)}", name)
    return _ACTIVATIONS[name]()


def _positive_ints(name: str, values: Sequence[int], *, allow_empty: bool = True) -> list[int]:
    values = [values] if isinstance(values, int) else list(values)
    if (not values and not allow_empty) or any(
        not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values
    ):
        raise InvalidParameterError(name, "a list of positive integers", values)
    return values


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a built-in model: its family and keyword arguments."""

    family: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return build_model(self.family, **self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "kwargs": dict(self.kwargs)}


class _StudioModel(nn.Module):
    """Shared helpers: the spec that rebuilds the model and example inputs."""

    family = ""
    input_shape: tuple[int, ...] = ()

    def spec(self) -> ModelSpec:
        return ModelSpec(self.family, dict(self._kwargs))

    def example_inputs(self, batch_size: int = 1) -> torch.Tensor:
        return torch.randn(batch_size, *self.input_shape)


@_family("mlp")
class MLP(_StudioModel):
    """Fully connected network; flattens any input shape."""

    def __init__(
        self,
        input_dim: int | None = None,
        hidden_dims: Sequence[int] = (64, 32),
        num_classes: int = 2,
        dropout: float = 0.0,
        activation: str = "relu",
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(input_shape) if input_shape else (int(input_dim or 0),)
        if input_dim is not None and math.prod(shape) != input_dim:
            raise InvalidParameterError(
                "input_dim", f"equal to prod(input_shape)={shape}", input_dim)
        hidden = _positive_ints("hidden_dims", hidden_dims)
        _check_common(math.prod(shape), num_classes, dropout)
        self._kwargs = dict(
            input_dim=math.prod(shape), hidden_dims=hidden, num_classes=num_classes,
            dropout=dropout, activation=activation, input_shape=list(shape),
        )
        self.input_shape = shape
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for h in hidden:
            layers += [nn.Linear(width, h), _activation(activation)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@_family("cnn")
class CNN(_StudioModel):
    """Conv-BN-activation stages (max-pooled while the map is ≥ 2 pixels) and a linear head."""

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        kernel_size: int = 3,
        activation: str = "relu",
        dropout: float = 0.0,
        hidden_dims: Sequence[int] = (),
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise InvalidParameterError(
                "input_shape", "an image shape (channels, height, width); use 'mlp' for "
                "tabular data", list(shape))
        chans = _positive_ints("channels", channels, allow_empty=False)
        hidden = _positive_ints("hidden_dims", hidden_dims)
        if kernel_size not in (1, 3, 5, 7):
            raise InvalidParameterError("kernel_size", "one of [1, 3, 5, 7]", kernel_size)
        _check_common(math.prod(shape), num_classes, dropout)
        self._kwargs = dict(
            input_shape=list(shape), channels=chans, num_classes=num_classes,
            kernel_size=kernel_size, activation=activation, dropout=dropout,
            hidden_dims=hidden,
        )
        self.input_shape = shape
        c, h, w = shape
        layers: list[nn.Module] = []
        for out in chans:
            layers += [
                nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(out),
                _activation(activation),
            ]
            if min(h, w) >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for hd in hidden:
            head += [nn.Linear(width, hd), _activation(activation)]
            width = hd
        if dropout:
            head.append(nn.Dropout(dropout))
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)
        self.last_attention: torch.Tensor | None = None
        self.keep_attention = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # unbind (not indexing) lets Torch-Pruning trace heads
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        if self.keep_attention:
            self.last_attention = attn
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int, act: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), _activation(act), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@_family("vit")
class ViT(_StudioModel):
    """A tiny vision transformer; heads and mlp_dim may be given per block."""

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        patch_size: int = 2,
        dim: int = 32,
        depth: int = 2,
        heads: int | Sequence[int] = 4,
        head_dim: int = 8,
        mlp_dim: int | Sequence[int] = 64,
        num_classes: int = 10,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3:
            raise InvalidParameterError("input_shape", "an image shape (channels, height, "
                                        "width); use 'mlp' for tabular data", list(shape))
        c, h, w = shape
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise InvalidParameterError(
                "patch_size", f"a positive divisor of the image size {h}x{w}", patch_size)
        for name, value in (("dim", dim), ("depth", depth), ("head_dim", head_dim)):
            _positive_ints(name, [value])
        heads_l = _per_block("heads", heads, depth)
        mlp_l = _per_block("mlp_dim", mlp_dim, depth)
        _check_common(math.prod(shape), num_classes, 0.0)
        self._kwargs = dict(
            input_shape=list(shape), patch_size=patch_size, dim=dim, depth=depth,
            heads=heads_l if len(set(heads_l)) > 1 else heads_l[0], head_dim=head_dim,
            mlp_dim=mlp_l if len(set(mlp_l)) > 1 else mlp_l[0], num_classes=num_classes,
            activation=activation,
        )
        self.input_shape = shape
        self.patch_embed = nn.Conv2d(c, dim, patch_size, stride=patch_size)
        n_patches = (h // patch_size) * (w // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos = torch.empty(1, n_patches + 1, dim)
        if not pos.is_meta:  # counting on meta needs no values (its normal_ loads for seconds)
            pos.normal_(0.0, 0.02)  # the same values as torch.randn(...) * 0.02
        self.pos_embed = nn.Parameter(pos)
        self.blocks = nn.Sequential(
            *[Block(dim, heads_l[i], head_dim, mlp_l[i], activation) for i in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.classifier(self.norm(self.blocks(tokens))[:, 0])


def _per_block(name: str, value: int | Sequence[int], depth: int) -> list[int]:
    values = [value] * depth if isinstance(value, int) else list(value)
    if len(values) != depth:
        raise InvalidParameterError(name, f"an integer or a list of {depth} integers", value)
    return _positive_ints(name, values)


def _check_common(input_dim: int, num_classes: int, dropout: float) -> None:
    if input_dim < 1:
        raise InvalidParameterError("input_dim", "a positive integer", input_dim)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise InvalidParameterError("num_classes", "an integer ≥ 2", num_classes)
    if not 0.0 <= dropout < 1.0:
        raise InvalidParameterError("dropout", "a float in [0, 1)", dropout)


def list_families() -> list[str]:
    """Names of the built-in families."""
    return list(_FAMILIES)


# Width kwargs per family, in the order a size error names them.
_SIZE_KWARGS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden_dims", "input_dim", "input_shape"),
    "cnn": ("channels", "hidden_dims", "kernel_size", "input_shape"),
    "vit": ("dim", "mlp_dim", "depth", "heads", "head_dim", "patch_size", "input_shape"),
}


def _construct(family: str, kwargs: dict[str, Any]) -> nn.Module:
    if family not in _FAMILIES:
        raise InvalidParameterError("model", f"one of {list(_FAMILIES)}", family)
    try:
        return _FAMILIES[family](**kwargs)
    except TypeError as exc:
        raise InvalidParameterError("model kwargs", f"valid for '{family}' ({exc})", kwargs)


def _size_kwarg(family: str, kwargs: dict[str, Any]) -> str:
    given = [k for k in _SIZE_KWARGS.get(family, ()) if k in kwargs]
    return given[0] if given else "model_kwargs"


def _check_layers(family: str, kwargs: dict[str, Any]) -> None:
    """Bound the number of layers before anything is built (even on the meta device)."""
    from core.limits import check_limit

    for name in ("hidden_dims", "channels", "depth", "heads", "mlp_dim"):
        value = kwargs.get(name)
        layers = value if isinstance(value, int) and name == "depth" else (
            len(value) if isinstance(value, (list, tuple)) else 0)
        check_limit(name, layers, "model_layers", value=value,
                    detail=f"a '{family}' with {name}={_short(value)} has {layers:,} layers")


def _short(value: Any) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_parameters(family: str, **kwargs: Any) -> int:
    """Parameters of a built-in model, counted on the meta device (no weights are allocated).

    Raises a clear error for invalid kwargs, too many layers (STUDIO_MAX_MODEL_LAYERS) or too
    many parameters (STUDIO_MAX_MODEL_PARAMS), naming the width kwarg.
    """
    from core.limits import check_limit

    _check_layers(family, kwargs)
    with torch.device("meta"):
        model = _construct(family, kwargs)
    n = sum(p.numel() for p in model.parameters())
    name = _size_kwarg(family, kwargs)
    shape = list(getattr(model, "input_shape", ()))
    check_limit(name, n, "model_params", value=kwargs.get(name, kwargs),
                detail=f"a '{family}' with {name}={_short(kwargs.get(name, kwargs))} on inputs "
                       f"{shape} has {n:,} parameters")
    return n


def build_model(family: str, **kwargs: Any) -> nn.Module:
    """Build a built-in model: ``build_model("cnn", channels=[16, 32], num_classes=10)``.

    Its size is checked first (``count_parameters``), so an oversized config is refused
    before any weight is allocated.
    """
    count_parameters(family, **kwargs)
    return _construct(family, kwargs)


DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden_dims": [64, 32]},
    "cnn": {"channels": [16, 32]},
    "vit": {"patch_size": 2, "dim": 32, "depth": 2, "heads": 4, "head_dim": 8, "mlp_dim": 64},
}


def model_kwargs_for_data(
    family: str, input_shape: Sequence[int], num_classes: int, **overrides: Any
) -> dict[str, Any]:
    """The kwargs ``model_for_data`` builds with: the family's defaults, the overrides and
    the data's input shape and classes (count them with ``count_parameters``)."""
    kwargs = {**DEFAULTS.get(family, {}), **overrides}
    kwargs.update(input_shape=list(input_shape), num_classes=num_classes)
    if family == "vit" and "patch_size" not in overrides:
        side = min(input_shape[1:]) if len(input_shape) == 3 else 1
        kwargs["patch_size"] = next(p for p in (4, 2, 1) if p <= side and side % p == 0) \
            if side >= 16 else kwargs["patch_size"]
    return kwargs


def model_for_data(
    family: str, input_shape: Sequence[int], num_classes: int, **overrides: Any
) -> nn.Module:
    """A built-in model sized for a data set, with the family's defaults."""
    return build_model(family, **model_kwargs_for_data(family, input_shape, num_classes,
                                                       **overrides))


def is_builtin(model: nn.Module) -> bool:
    """True for a model of a built-in family (it can be saved as family + widths)."""
    return isinstance(model, _StudioModel)
