"""Built-in model families: ``mlp``, ``cnn`` and ``vit``, with explicit widths."""

from core.models._families import (
    CNN,
    DEFAULTS,
    MLP,
    ModelSpec,
    ViT,
    build_model,
    count_parameters,
    is_builtin,
    list_families,
    model_for_data,
    model_kwargs_for_data,
)

__all__ = [
    "CNN",
    "DEFAULTS",
    "MLP",
    "ModelSpec",
    "ViT",
    "build_model",
    "count_parameters",
    "is_builtin",
    "list_families",
    "model_for_data",
    "model_kwargs_for_data",
]
