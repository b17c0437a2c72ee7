"""The registered distillation methods: each supplies teacher targets and an optional term.

The shared loss (in ``_distill``) is, per batch of B rows,
``[(1-α)·Σ_labelled CE + α·T²·Σ_rows KL(p_teacher‖p_student) ] / B + β·extra``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.distillation._config import DistillConfig
from core.errors import InvalidParameterError, UnsupportedModelError
from core.registry import register_method

AREA = "distillation"


@dataclass
class Setup:
    """What a method works with: teachers, the student, data, config and transfer set."""

    teacher: Any
    student: Any
    data: Any
    config: DistillConfig
    transfer: Any
    extra_teachers: list[Any] = field(default_factory=list)


def _is_torch(model: Any) -> bool:
    import torch

    return isinstance(model, torch.nn.Module)


def _softmax_np(logits: np.ndarray, T: float) -> np.ndarray:
    """Temperature-softened probabilities of a teacher's scores; scores that are already
    probabilities (an ONNX teacher ending in Softmax) are taken as their log, which is the
    logits up to a per-row constant, so the soft targets are the same as from its logits."""
    from core.measure._accuracy import _are_probabilities

    if _are_probabilities(logits):
        logits = np.log(np.clip(logits, 1e-30, 1.0))
    z = logits / T
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Method:
    """Soft targets from the teacher's logits, precomputed once over the transfer set."""

    name = "soft-target"
    default_beta = 0.0
    needs_torch_teacher = False

    def __init__(self, setup: Setup) -> None:
        self.s = setup
        cfg = setup.config
        self.T = cfg.temperature
        self.beta = self.default_beta if cfg.beta is None else cfg.beta
        self._probs = None
        self._hooks: list[Any] = []
        self._store: dict[str, Any] = {}
        if self.needs_torch_teacher and not _is_torch(setup.teacher):
            raise UnsupportedModelError(
                f"The '{self.name}' method reads the teacher's intermediate layers, so the "
                "teacher must be a torch model (a built-in run folder); this teacher is "
                f"{type(setup.teacher).__name__}. Use 'soft-target' or 'multi-teacher' for "
                "ONNX teachers.")

    # --- what the loss asks for ---------------------------------------------------------
    def prepare(self, callbacks: Any) -> Any:
        """Precompute what is needed; return an nn.Module of extra trainable parts or None."""
        from core.measure import predict_logits

        callbacks.progress(0.0, "Teacher labels the transfer set")
        logits = predict_logits(self.s.teacher, self.s.transfer.X)
        self._set_probs(_softmax_np(logits, self.T))
        return None

    def _set_probs(self, probs: np.ndarray) -> None:
        import torch

        self._probs = torch.from_numpy(probs)

    def teacher_probs(self, xb: Any, idx: Any) -> Any:
        return None if self._probs is None else self._probs[idx]

    def extra_loss(self, xb: Any, idx: Any, logits: Any) -> Any:
        return None

    def after_step(self, model: Any) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"beta": self.beta} if self.default_beta else {}

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._store.clear()

    # --- helpers ------------------------------------------------------------------------
    def _hook(self, module: Any, key: str, *, pre: bool = False) -> None:
        def grab(_m: Any, inputs: Any, output: Any = None) -> None:
            self._store[key] = inputs[0] if pre else output

        if pre:
            self._hooks.append(module.register_forward_pre_hook(grab))
        else:
            self._hooks.append(module.register_forward_hook(grab))

    def _teacher_forward(self, xb: Any) -> None:
        import torch

        self.s.teacher.eval()
        with torch.no_grad():
            self.s.teacher(xb)


@register_method("soft-target", area=AREA, config=DistillConfig,
                 summary="Hinton soft targets: α·T²·KL(teacher‖student) + (1−α)·CE")
class SoftTarget(Method):
    """Hinton et al. 2015: match the teacher's temperature-softened class probabilities."""


def _named(model: Any, name: str, role: str) -> Any:
    modules = dict(model.named_modules())
    if name not in modules:
        raise InvalidParameterError(
            "layer", f"a module name of the {role} (e.g. {sorted(k for k in modules if k)[:6]})",
            name)
    return modules[name]


def _default_layer(model: Any) -> str:
    family = getattr(model, "family", "")
    if family == "vit":
        return "blocks"
    if family in ("cnn", "mlp") or hasattr(model, "features"):
        return "features"
    raise UnsupportedModelError("Name the intermediate layer to match (layer=...); this model "
                                "is not a built-in family.")


@register_method("feature", area=AREA, config=DistillConfig,
                 summary="FitNets hints: an intermediate layer matched through a learned "
                         "projection (MSE), plus soft targets")
class Feature(Method):
    """Romero et al. 2015: regress the teacher's intermediate features from the student's."""

    name = "feature"
    default_beta = 1.0
    needs_torch_teacher = True

    def prepare(self, callbacks: Any) -> Any:
        import torch
        from torch import nn

        super().prepare(callbacks)
        cfg = self.s.config
        self.layer = cfg.layer or _default_layer(self.s.teacher)
        self._hook(_named(self.s.teacher, self.layer, "teacher"), "t")
        self._hook(_named(self.s.student, cfg.layer or _default_layer(self.s.student),
                          "student"), "s")
        probe = torch.from_numpy(self.s.data.X_train[:2])
        self._teacher_forward(probe)
        self.s.student.eval()
        with torch.no_grad():
            self.s.student(probe)
        t, s = self._store["t"], self._store["s"]
        if t.ndim != s.ndim or t.ndim not in (2, 3, 4):
            raise UnsupportedModelError(
                f"Layer '{self.layer}' gives teacher features {list(t.shape[1:])} and student "
                f"features {list(s.shape[1:])}; they cannot be matched. Pick another layer.")
        if t.ndim == 4:
            self.proj = nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
        else:
            self.proj = nn.Linear(s.shape[-1], t.shape[-1], bias=False)
        if t.ndim == 3 and t.shape[1] != s.shape[1]:
            raise UnsupportedModelError(f"Teacher and student have {t.shape[1]} and "
                                        f"{s.shape[1]} tokens at '{self.layer}'.")
        return self.proj

    def extra_loss(self, xb: Any, idx: Any, logits: Any) -> Any:
        import torch.nn.functional as F

        s = self.proj(self._store["s"])
        self._teacher_forward(xb)
        t = self._store["t"]
        if t.ndim == 4 and t.shape[2:] != s.shape[2:]:
            size = tuple(min(a, b) for a, b in zip(t.shape[2:], s.shape[2:]))
            s, t = F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size)
        return F.mse_loss(s, t)

    def describe(self) -> dict[str, Any]:
        return {"beta": self.beta, "layer": self.layer}


def _activation_modules(model: Any) -> list[Any]:
    """The activation module closing each conv stage of a cnn (its attention maps)."""
    from torch import nn

    acts = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh)
    return [m for m in model.features if isinstance(m, acts)]


@register_method("attention", area=AREA, config=DistillConfig,
                 summary="Attention transfer: cnn activation maps or vit attention matrices, "
                         "plus soft targets")
class AttentionTransfer(Method):
    """Zagoruyko & Komodakis 2017: match normalized spatial attention (cnn) or vit attention."""

    name = "attention"
    default_beta = 1000.0
    needs_torch_teacher = True

    def prepare(self, callbacks: Any) -> Any:
        super().prepare(callbacks)
        t, s = self.s.teacher, self.s.student
        families = {getattr(t, "family", ""), getattr(s, "family", "")}
        if families == {"cnn"}:
            self.kind = "cnn"
            t_acts, s_acts = _activation_modules(t), _activation_modules(s)
            self.pairs = min(len(t_acts), len(s_acts))
            for i in range(self.pairs):
                self._hook(t_acts[i], f"t{i}")
                self._hook(s_acts[i], f"s{i}")
        elif families == {"vit"}:
            self.kind = "vit"
            self._attn = [t.blocks[-1].attn, s.blocks[-1].attn]
            for a in self._attn:
                a.keep_attention = True
            if t.pos_embed.shape[1] != s.pos_embed.shape[1]:
                raise UnsupportedModelError("Teacher and student vit differ in patch count; "
                                            "attention maps cannot be matched.")
        else:
            raise UnsupportedModelError(
                "Attention transfer needs a cnn teacher and student (activation maps) or a vit "
                f"teacher and student (attention matrices); got {sorted(families)}.")
        return None

    @staticmethod
    def _map(f: Any) -> Any:
        import torch.nn.functional as F

        return F.normalize(f.pow(2).mean(1).flatten(1), dim=1)

    def extra_loss(self, xb: Any, idx: Any, logits: Any) -> Any:
        if self.kind == "vit":
            s_att = self._attn[1].last_attention.mean(1)
            self._teacher_forward(xb)
            t_att = self._attn[0].last_attention.mean(1)
            return (s_att - t_att).pow(2).mean()
        s_maps = [self._store[f"s{i}"] for i in range(self.pairs)]
        self._teacher_forward(xb)
        total = 0.0
        for i, s in enumerate(s_maps):
            total = total + (self._map(s) - self._map(self._store[f"t{i}"])).pow(2).mean()
        return total

    def describe(self) -> dict[str, Any]:
        return {"beta": self.beta, "kind": self.kind}

    def close(self) -> None:
        for a in getattr(self, "_attn", []):
            a.keep_attention, a.last_attention = False, None
        super().close()


def _pdist(e: Any) -> Any:
    import torch

    d = torch.cdist(e, e)
    off = d[~torch.eye(len(e), dtype=torch.bool)]
    return d / off.mean().clamp_min(1e-8)


def _angles(e: Any) -> Any:
    import torch.nn.functional as F

    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return (diff @ diff.transpose(1, 2)).flatten()


@register_method("relational", area=AREA, config=DistillConfig,
                 summary="Relational KD (RKD): distance and angle relations between the "
                         "samples of a batch, plus soft targets")
class Relational(Method):
    """Park et al. 2019: match pairwise distances and triplet angles of the embeddings."""

    name = "relational"
    default_beta = 1.0
    needs_torch_teacher = True

    def prepare(self, callbacks: Any) -> Any:
        super().prepare(callbacks)
        self.layer = self.s.config.layer or "classifier"
        self._hook(_named(self.s.teacher, self.layer, "teacher"), "t", pre=True)
        self._hook(_named(self.s.student, self.layer, "student"), "s", pre=True)
        return None

    def extra_loss(self, xb: Any, idx: Any, logits: Any) -> Any:
        import torch.nn.functional as F

        s = self._store["s"].flatten(1)
        if len(s) < 3:
            return None
        self._teacher_forward(xb)
        t = self._store["t"].flatten(1)
        dist = F.smooth_l1_loss(_pdist(s), _pdist(t))
        angle = F.smooth_l1_loss(_angles(s), _angles(t))
        return dist + 2.0 * angle

    def describe(self) -> dict[str, Any]:
        return {"beta": self.beta, "layer": self.layer,
                "terms": "smooth-L1 distance + 2 × smooth-L1 angle (RKD's 25:50)"}


@register_method("self", area=AREA, config=DistillConfig,
                 summary="Self-distillation: the student's own snapshot from the previous "
                         "epoch is its teacher")
class SelfDistill(Method):
    """Snapshot of the student taken at the end of each epoch; epoch 1 uses labels only."""

    name = "self"

    def prepare(self, callbacks: Any) -> Any:
        n = len(self.s.transfer.labels)
        self.steps_per_epoch = math.ceil(n / self.s.config.batch_size)
        self.step = 0
        self.snapshot = None
        self.snapshots = 0
        return None

    def teacher_probs(self, xb: Any, idx: Any) -> Any:
        import torch

        if self.snapshot is None:
            return None
        with torch.no_grad():
            return torch.softmax(self.snapshot(xb) / self.T, dim=1)

    def after_step(self, model: Any) -> None:
        self.step += 1
        if self.step % self.steps_per_epoch == 0:
            student = getattr(model, "student", model)
            self.snapshot = copy.deepcopy(student).eval()
            for p in self.snapshot.parameters():
                p.requires_grad_(False)
            self.snapshots += 1

    def describe(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots, "teacher": "the student itself, one epoch earlier"}


@register_method("multi-teacher", area=AREA, config=DistillConfig,
                 summary="Average of several teachers' soft targets (e.g. the baseline and its "
                         "pruned and quantized variants)")
class MultiTeacher(Method):
    """Average the temperature-softened probabilities of every teacher."""

    name = "multi-teacher"

    def prepare(self, callbacks: Any) -> Any:
        from core.measure import predict_logits

        teachers = [self.s.teacher, *self.s.extra_teachers]
        if len(teachers) < 2:
            raise InvalidParameterError(
                "teachers", "at least one more teacher (run folders or model files) besides "
                "the main one for 'multi-teacher'", list(self.s.config.teachers))
        probs = []
        for i, t in enumerate(teachers):
            callbacks.progress(i / len(teachers), f"Teacher {i + 1}/{len(teachers)} labels "
                               "the transfer set")
            probs.append(_softmax_np(predict_logits(t, self.s.transfer.X), self.T))
        self._set_probs(np.mean(probs, axis=0).astype(np.float32))
        self.count = len(teachers)
        return None

    def describe(self) -> dict[str, Any]:
        return {"teachers": self.count}
