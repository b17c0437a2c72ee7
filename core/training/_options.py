"""Training-time options: bfloat16 autocast, mixup/cutmix, LR schedules, gradient
checkpointing, and the peak memory of a training run."""

from __future__ import annotations

import contextlib
import threading
import time
import types
from typing import Any, Callable, Iterator

import numpy as np

from core.errors import InvalidParameterError

PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("cosine", "constant", "step", "onecycle")
# Built-in families whose blocks can be recomputed in the backward pass: the ViT per
# transformer block, the MLP's hidden layers as one segment. Not the CNN: its BatchNorm layers
# would update their running statistics again when recomputed.
CHECKPOINT_BLOCKS = {"vit": "blocks", "mlp": "features"}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX-512 BF16 or AMX), as
    torch's own CPU detection says (core.measure's manifest)."""
    from core.measure._environment import cpu_isa

    return any(flag in cpu_isa() for flag in BF16_FLAGS)


def precision_context(precision: str) -> tuple[Callable[[], Any], list[str]]:
    """A factory of the forward's autocast context, and the warnings to report."""
    import torch

    if precision == "bf16":
        if bf16_native():
            return lambda: torch.autocast("cpu", dtype=torch.bfloat16), []
        have = torch.backends.cpu.get_cpu_capability()
        return contextlib.nullcontext, [
            f"bfloat16 autocast was asked, but this CPU ({have}) has no native bfloat16 "
            f"instructions ({' or '.join(BF16_FLAGS)}): emulated bf16 is slower than fp32, "
            "so training ran in fp32."]
    return contextlib.nullcontext, []


def mix_batch(xb: Any, yb: Any, *, mixup: float, cutmix: float, rng: np.random.Generator
              ) -> tuple[Any, Any, Any, float]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a batch with a permutation of
    itself: ``(x, y_a, y_b, lam)``; the loss is ``lam·CE(y_a) + (1-lam)·CE(y_b)``. Written here
    because torchvision's v2.MixUp/CutMix cannot be installed beside CPU torch 2.13."""
    import torch

    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(yb)))
    if not use_cutmix:
        return lam * xb + (1 - lam) * xb[perm], yb, yb[perm], lam
    h, w = xb.shape[-2:]
    ch, cw = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, w)
    mixed = xb.clone()
    mixed[..., y0:y1, x0:x1] = xb[perm][..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the pasted area's true share
    return mixed, yb, yb[perm], lam


def make_scheduler(opt: Any, config: Any, steps_per_epoch: int) -> Any:
    """The learning-rate schedule, stepped once per optimiser step (torch.optim.lr_scheduler).

    ``cosine``: linear warm-up then cosine decay to 0; ``constant``: warm-up then flat;
    ``step``: ×``lr_gamma`` every ``lr_step_epochs`` (after any warm-up); ``onecycle``:
    OneCycleLR to ``lr`` and down (its own warm-up)."""
    from torch.optim import lr_scheduler as S

    steps = max(config.epochs * steps_per_epoch, 1)
    warm = config.warmup_epochs * steps_per_epoch
    if config.lr_schedule == "onecycle":
        return S.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    if config.lr_schedule == "step":
        every = (config.lr_step_epochs or max(config.epochs // 3, 1)) * steps_per_epoch
        step = S.StepLR(opt, step_size=max(every, 1), gamma=config.lr_gamma)
        if not warm:
            return step
        ramp = S.LinearLR(opt, start_factor=1 / warm, total_iters=warm)
        return S.SequentialLR(opt, [ramp, step], milestones=[warm])
    flat = config.lr_schedule == "constant"

    def factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 1.0 if flat else 0.5 * (1 + np.cos(np.pi * (s - warm) / max(steps - warm, 1)))

    return S.LambdaLR(opt, factor)


def _checkpointed_forward(self: Any, x: Any) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    if not (self.training and torch.is_grad_enabled()):
        return type(self).forward(self, x)
    if not self._studio_per_block:  # one segment: everything inside is recomputed
        return checkpoint(type(self).forward, self, x, use_reentrant=False)
    for block in self:
        x = checkpoint(block, x, use_reentrant=False)
    return x


@contextlib.contextmanager
def gradient_checkpointing(model: Any, enabled: bool) -> Iterator[None]:
    """Recompute each block's activations in the backward pass instead of keeping them
    (``torch.utils.checkpoint``), for the built-in families where that applies."""
    if not enabled:
        yield
        return
    family = getattr(model, "family", None)
    if family not in CHECKPOINT_BLOCKS:
        raise InvalidParameterError(
            "grad_checkpointing", f"used only with a built-in {sorted(CHECKPOINT_BLOCKS)} "
            "model (its repeated blocks are recomputed; a CNN's BatchNorm would update its "
            "statistics twice)", f"true for a {family or type(model).__name__} model")
    seq = getattr(model, CHECKPOINT_BLOCKS[family])
    seq._studio_per_block = family == "vit"
    seq.forward = types.MethodType(_checkpointed_forward, seq)  # instance-only: weights as is
    try:
        yield
    finally:
        del seq.forward, seq._studio_per_block


class PeakRSS:
    """Peak resident memory growth (MB) while the block runs, sampled every few ms."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s, self.peak_mb = interval_s, 0.0

    def __enter__(self) -> "PeakRSS":
        import psutil

        self._proc = psutil.Process()
        self._base = self._peak = self._proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak_mb = (self._peak - self._base) / 2**20
