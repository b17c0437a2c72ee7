"""The training options (TrainConfig's) as UI widgets, and the note of what they cost."""

from __future__ import annotations

from typing import Any

import gradio as gr

from core.training._options import LR_SCHEDULES, PRECISIONS


def train_option_widgets() -> list[Any]:
    """An accordion of training options; returns its widgets in ``train_option_config``'s
    order: precision, gradient accumulation, checkpointing, label smoothing, mixup, cutmix,
    LR schedule."""
    with gr.Accordion("Training options", open=False):
        widgets = [
            gr.Dropdown(list(PRECISIONS), value="fp32", label="Precision (bf16 only where the "
                        "CPU computes it natively; else fp32 and a warning)"),
            gr.Slider(1, 64, value=1, step=1, label="Gradient accumulation steps"),
            gr.Checkbox(False, label="Gradient checkpointing (vit, mlp)"),
            gr.Slider(0.0, 0.5, value=0.0, step=0.05, label="Label smoothing"),
            gr.Number(0.0, label="Mixup alpha (0 = off)", minimum=0, maximum=100),
            gr.Number(0.0, label="CutMix alpha (images; 0 = off)", minimum=0, maximum=100),
            gr.Dropdown(list(LR_SCHEDULES), value="cosine", label="Learning-rate schedule"),
        ]
    return widgets


def train_option_config(precision: str, accum: float, checkpointing: bool, smoothing: float,
                        mixup: float, cutmix: float, schedule: str) -> dict[str, Any]:
    """TrainConfig fields from the widgets' values."""
    return {"precision": precision, "grad_accum_steps": int(accum),
            "grad_checkpointing": bool(checkpointing), "label_smoothing": float(smoothing or 0),
            "mixup_alpha": float(mixup or 0), "cutmix_alpha": float(cutmix or 0),
            "lr_schedule": schedule}


def training_note(report: dict[str, Any]) -> str:
    """What the training cost, measured: time per epoch and peak memory growth; warnings."""
    t = report.get("training") or {}
    if t.get("seconds_per_epoch") is None:
        return ""
    text = f" Training: {t['seconds_per_epoch']:.2f} s per epoch (median)"
    if t.get("peak_memory_mb") is not None:
        text += f", peak memory +{t['peak_memory_mb']:.0f} MB"
    return text + "." + "".join(f"\n\n⚠ {w}" for w in t.get("warnings") or [])
