"""Students: a built-in family scaled from the teacher by width (and depth), or a given model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from core.errors import InvalidParameterError, UnsupportedModelError

if TYPE_CHECKING:  # torch: core.models is imported where a student is built
    from core.models import ModelSpec


def _scale(values: list[int], width: float, what: str, ratio_name: str = "width") -> list[int]:
    scaled = [int(round(v * width)) for v in values]
    if any(v < 1 for v in scaled):
        raise InvalidParameterError(
            ratio_name, f"large enough that every layer keeps at least one unit ({what} "
            f"{values} × {width:g} → {scaled} has a zero-width layer)", width)
    return scaled


def _keep(n: int, depth: float, minimum: int = 1) -> int:
    return max(minimum, int(math.ceil(n * depth - 1e-9))) if n else 0


def scaled_spec(spec: ModelSpec, *, width: float = 0.5, depth: float = 1.0) -> ModelSpec:
    """The spec of a student scaled from a built-in teacher's spec.

    cnn: channels and hidden_dims × width, first ⌈depth·n⌉ conv stages kept; mlp:
    hidden_dims × width (⌈depth·n⌉ layers kept); vit: dim, heads and mlp_dim × width
    (head_dim kept), ⌈depth·blocks⌉ blocks kept.
    """
    from core.models import DEFAULTS, ModelSpec

    kw: dict[str, Any] = dict(spec.kwargs)
    if spec.family == "cnn":
        chans = list(kw.get("channels", DEFAULTS["cnn"]["channels"]))
        chans = chans[: _keep(len(chans), depth)]
        kw["channels"] = _scale(chans, width, "cnn channels")
        hidden = list(kw.get("hidden_dims", []))
        kw["hidden_dims"] = _scale(hidden[: _keep(len(hidden), depth, 0)], width,
                                   "cnn hidden_dims")
    elif spec.family == "mlp":
        hidden = list(kw.get("hidden_dims", DEFAULTS["mlp"]["hidden_dims"]))
        kw["hidden_dims"] = _scale(hidden[: _keep(len(hidden), depth)], width,
                                   "mlp hidden_dims")
    elif spec.family == "vit":
        depth_n = int(kw.get("depth", 2))
        keep = _keep(depth_n, depth)
        heads = kw.get("heads", 4)
        heads = [heads] * depth_n if isinstance(heads, int) else list(heads)
        mlp = kw.get("mlp_dim", 64)
        mlp = [mlp] * depth_n if isinstance(mlp, int) else list(mlp)
        kw["dim"] = _scale([int(kw.get("dim", 32))], width, "vit dim")[0]
        kw["heads"] = _scale(heads[:keep], width, "vit heads")
        kw["mlp_dim"] = _scale(mlp[:keep], width, "vit mlp_dim")
        kw["depth"] = keep
    else:
        raise UnsupportedModelError(f"Cannot scale a '{spec.family}' model; give a student.")
    return ModelSpec(spec.family, kw)


def build_student(teacher: Any, data: Any, *, width: float, depth: float,
                  family: str | None, teacher_meta: dict[str, Any] | None = None) -> Any:
    """A fresh built-in student scaled from the teacher (or from ``family``'s defaults)."""
    from core.models import ModelSpec, build_model, is_builtin

    spec = None
    if teacher is not None and is_builtin(teacher):
        spec = teacher.spec()
    elif teacher_meta:
        # A built-in run's own spec, or, for a quantized run, the FP32 model it came from.
        for meta in (teacher_meta, teacher_meta.get("source_model") or {}):
            if meta.get("family") and meta.get("kwargs"):
                spec = ModelSpec(meta["family"], dict(meta["kwargs"]))
                break
    if family is not None and (spec is None or spec.family != family):
        from core.models import model_for_data

        spec = model_for_data(family, data.input_shape, data.num_classes).spec()
    if spec is None:
        raise UnsupportedModelError(
            "The teacher is not a built-in family, so a student cannot be scaled from it. "
            "Name a student family (--family cnn|mlp|vit) or give a student model (--student).")
    return build_model(spec.family, **scaled_spec(spec, width=width, depth=depth).kwargs)


def converted_student(loaded: Any, *, what: str) -> Any:
    """An ONNX model (a LoadedModel) as a trainable torch module (onnx2torch, checked
    against ONNX Runtime), or one clear refusal naming why."""
    from core.artifacts import trainable_module
    from core.artifacts._convert_modules import FixedBatch
    from core.errors import StudioError

    if loaded is None:
        raise UnsupportedModelError(
            f"The {what} is an ONNX Runtime session without its file; pass the .onnx path so "
            "it can be converted to a trainable torch module, or give a student.")
    try:
        module = trainable_module(loaded)
    except StudioError as exc:
        raise UnsupportedModelError(
            f"The {what} cannot be trained: {exc} Give a student (--student run folder, or "
            "--family cnn|mlp|vit).") from None
    if isinstance(module, FixedBatch):
        raise UnsupportedModelError(
            f"The {what} is an ONNX graph whose batch size is fixed in its shapes, so it "
            "cannot be trained as a torch module. Export it with a dynamic batch, or give a "
            "student (--family cnn|mlp|vit).")
    return module


def onnx_student(loaded: Any, data: Any, *, width: float, depth: float,
                 seed: int) -> tuple[Any, str]:
    """The student for an ONNX teacher: the teacher's own architecture (converted to torch)
    with ``1 − width`` of its channels/neurons removed by structured pruning (Torch-Pruning;
    the kept weights are its start), or at width 1 the same architecture re-initialized
    where its layers allow (see :func:`_fresh_start`).
    ``depth`` < 1 cannot apply to an arbitrary graph."""
    import torch

    from core.pruning import PruningConfig
    from core.pruning._structured import StructuredPruner

    if depth != 1.0:
        raise InvalidParameterError(
            "depth", "1.0 for an ONNX teacher (its layers cannot be dropped; use --width, or "
            "--family cnn|mlp|vit)", depth)
    module = converted_student(loaded, what="teacher")
    if width > 0.95:  # less than the smallest pruning step (5 %): the same width
        return module, _fresh_start(module, seed)
    cfg = PruningConfig(method="structured-l2", sparsity=round(1.0 - width, 6),
                        finetune_epochs=0, seed=seed)
    example = torch.from_numpy(data.X_train[:2])
    before = sum(p.numel() for p in module.parameters())
    try:
        StructuredPruner(module, example, cfg).step(data)
        with torch.no_grad():
            module.eval()(example)
    except Exception as exc:
        text = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UnsupportedModelError(
            f"A student at width {width:g} cannot be cut from this ONNX teacher's converted "
            f"graph ({text}). Give --width 1 (its own architecture), a student "
            "(--student), or a family (--family cnn|mlp|vit).") from None
    if sum(p.numel() for p in module.parameters()) >= before:  # nothing was narrowed
        raise UnsupportedModelError(
            f"A student at width {width:g} cannot be cut from this ONNX teacher: structured "
            "pruning found no layer to narrow (Linear or Conv2d before the output layer; an "
            "ONNX MatMul by constant weights over more than two axes is not one), so the "
            "student would be the teacher's own size. Give --width 1 (its own architecture), "
            "a student (--student), or a family (--family cnn|mlp|vit).")
    return module, (f"the teacher's architecture (ONNX, converted to torch) at width "
                    f"{width:g}: channels/neurons removed by structured pruning (L2)")


def _fresh_start(module: Any, seed: int) -> str:
    """Re-initialize every layer that can (``reset_parameters``: a "born-again" student) and
    say how much that was: weights held as graph constants (an ONNX MatMul's) keep the
    teacher's values, as there is no layer to say how to initialize them."""
    import torch

    torch.manual_seed(seed)
    fresh: set[int] = set()
    for layer in module.modules():
        if layer is not module and hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
            fresh.update(id(p) for p in layer.parameters(recurse=False))
    params = list(module.parameters())
    total = sum(p.numel() for p in params)
    reset = sum(p.numel() for p in params if id(p) in fresh)
    what = "the teacher's architecture (ONNX, converted to torch), same width, "
    if reset == total:
        return what + "freshly initialized"
    return what + (f"{reset:,} of its {total:,} weights freshly initialized; the other "
                   f"{total - reset:,} (graph constants such as MatMul weights) start from "
                   "the teacher's")


def check_student(student: Any, data: Any, num_classes: int) -> None:
    """The student must take the data's inputs and output the teacher's classes."""
    import torch

    if not isinstance(student, torch.nn.Module) or isinstance(student, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            "The student must be a trainable torch model (a built-in run folder, or an "
            f"nn.Module from Python); got {type(student).__name__}.")
    student.eval()
    with torch.no_grad():
        try:
            out = student(torch.from_numpy(data.X_train[:2]))
        except RuntimeError as exc:
            raise InvalidParameterError(
                "student", f"a model that takes inputs of shape {list(data.input_shape)} "
                f"({str(exc).splitlines()[0][:120]})", type(student).__name__) from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise InvalidParameterError(
            "student", f"a model with the teacher's {num_classes} output classes",
            f"a model with {out.shape[-1]} outputs")
