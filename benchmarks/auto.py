"""Auto-optimizer benchmark (a goal, not a test): ``target=speed, tolerance=0.005``.

Two models: the digits ``cnn`` (trained by the optimizer itself from its family name) and a
ResNet-like CNN (residual blocks, ~1.6 M parameters, 3×32×32 inputs) trained here on the
digits images upscaled 4× to 32×32 RGB — nothing is downloaded. For each, ``core.auto.auto``
(what ``studio auto`` runs) proposes candidates for this CPU, runs them, re-measures all of
them and the torch FP32 eager baseline side by side in one run (1 thread, interleaved), and
picks the fastest variant at batch 64 on the Pareto front within 0.5 pt of validation
accuracy (after up to two rounds of sparsity search between the strongest pruning within the
tolerance and the mildest one beyond it). The picks for ``size``, ``accuracy`` and
``balanced`` are then made from the same measured table (``core.auto.reselect``: same
candidates, same measurements).

Goal from the issue: ≥ 12× faster at batch 64 and ≥ 15× smaller than torch FP32 eager,
within the tolerance. Every figure below is measured on this machine; ratios are reported
as they came out, met or not.

Run: ``flock /tmp/bench.lock .venv/bin/python benchmarks/auto.py [--quick]``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.auto import AutoConfig, auto, reselect  # noqa: E402
from core.data import Dataset, load_dataset  # noqa: E402
from core.data._dataset import DataSpec  # noqa: E402
from core.measure import environment_manifest  # noqa: E402
from core.training import TrainConfig, train  # noqa: E402

OUT = Path(__file__).parent / "results" / "auto.json"
MEASURE = {"threads": 1, "budget_s": 0.4, "memory": True}
TOLERANCE = 0.005
GOAL_SPEEDUP_B64, GOAL_SIZE = 12.0, 15.0


class Block(nn.Module):
    """A ResNet basic block (two 3×3 convs, BN, ReLU, identity or 1×1 projection)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNetLike(nn.Module):
    """Stride-2 stem, three stages (64, 128, 256 channels), global pooling, linear head."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (64, 128, 256)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        stages, cin = [], 32
        for i, w in enumerate(widths):
            stages.append(Block(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def digits_rgb32() -> Dataset:
    """The digits splits, each 8×8 image upscaled 4× (bilinear) to 3×32×32."""
    import torch.nn.functional as F

    d = load_dataset("digits")

    def up(X: np.ndarray) -> np.ndarray:
        t = F.interpolate(torch.from_numpy(X), scale_factor=4, mode="bilinear",
                          align_corners=False)
        return t.repeat(1, 3, 1, 1).numpy().astype(np.float32)

    return Dataset("digits-rgb32", up(d.X_train), d.y_train, up(d.X_val), d.y_val,
                   up(d.X_test), d.y_test, d.class_names,
                   {**d.preprocessing, "then": "bilinear 4x upscale to 32x32, 3 channels"},
                   DataSpec(source="digits-rgb32"))


def _summary(label: str, report: dict, seconds: float) -> dict:
    info = report["auto"]
    win = next(c for c in info["candidates"] if c["name"] == info["winner"])
    picks = {"speed": {"winner": info["winner"], "explanation": info["explanation"]}}
    for target in ("size", "accuracy", "balanced"):
        other = reselect(report, target)
        picks[target] = {"winner": other["winner"], "explanation": other["explanation"],
                         "speedup_b64": other["row"].get("speedup_b64"),
                         "size_reduction": other["row"].get("size_reduction"),
                         "val_drop": other["row"].get("val_drop")}
    return {
        "model": label, "seconds": round(seconds, 1),
        "baseline": {"params": report["baseline"]["params"],
                     "size_bytes": report["baseline"]["size_bytes"],
                     "accuracy": report["baseline"]["accuracy"],
                     "p50_b1_ms": report["baseline"]["latency_ms"]["1"]["p50"],
                     "p50_b64_ms": report["baseline"]["latency_ms"]["64"]["p50"]},
        "winner": info["winner"],
        "speedup_b64": win["speedup_b64"], "speedup_b1": win["speedup_b1"],
        "size_reduction": win["size_reduction"],
        "test_accuracy_delta_pt": win["accuracy_delta"] * 100,
        "val_accuracy_drop_pt": win["val_drop"] * 100,
        "goals": {"speedup_b64_ge_12": (win["speedup_b64"] or 0) >= GOAL_SPEEDUP_B64,
                  "size_reduction_ge_15": (win["size_reduction"] or 0) >= GOAL_SIZE,
                  "within_tolerance": win["val_drop"] <= TOLERANCE + 1e-12},
        "picks_by_target": picks,
        "candidates": info["candidates"], "losers": info["losers"],
        "skipped": info["skipped"], "failed": info["failed"],
    }


def main(quick: bool = False) -> None:
    torch.set_num_threads(2)  # training; every timing pins 1 thread
    results = []
    work = Path(tempfile.mkdtemp(prefix="bench-auto-"))
    cnn_cfg = AutoConfig(target="speed", tolerance=TOLERANCE, train_epochs=2 if quick else 15,
                         finetune_epochs=1 if quick else 10, refine=1 if quick else 2)
    t0 = time.perf_counter()
    rep = auto("cnn", "digits", cnn_cfg, out_dir=work / "cnn", measure_options=MEASURE).report
    results.append(_summary("digits cnn (channels 16, 32)", rep, time.perf_counter() - t0))
    print(json.dumps({k: results[-1][k] for k in ("winner", "speedup_b64", "size_reduction",
                                                  "val_accuracy_drop_pt")}), flush=True)

    data = digits_rgb32()
    torch.manual_seed(0)
    net = ResNetLike(data.num_classes)
    t0 = time.perf_counter()
    train(net, data, TrainConfig(epochs=1 if quick else 8, lr=0.003, seed=0))
    net.eval()
    res_cfg = AutoConfig(target="speed", tolerance=TOLERANCE, finetune_epochs=1 if quick else 5,
                         refine=1 if quick else 2)
    rep = auto(net, data, res_cfg, out_dir=work / "resnet", measure_options=MEASURE).report
    results.append(_summary(f"ResNet-like ({sum(p.numel() for p in net.parameters()):,} params,"
                            " 3x32x32 upscaled digits)", rep, time.perf_counter() - t0))
    print(json.dumps({k: results[-1][k] for k in ("winner", "speedup_b64", "size_reduction",
                                                  "val_accuracy_drop_pt")}), flush=True)
    payload = {"benchmark": "auto", "quick": quick, "target": "speed", "tolerance": TOLERANCE,
               "goal": {"speedup_b64": GOAL_SPEEDUP_B64, "size_reduction": GOAL_SIZE},
               "measure_options": MEASURE, "environment": environment_manifest(threads=1),
               "results": results, "work_dir": str(work)}
    if not quick:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {OUT}")
    else:
        print(json.dumps(payload, indent=2, default=str)[:3000])


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
