"""Candidate recipes proposed for the hardware and the model at hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["CANDIDATE_NAMES", "EXPORT", "STATIC_INT8", "TORCH_INT8", "Candidate", "propose",
           "prune_steps"]

CANDIDATE_NAMES = (
    "ort-fp32", "ort-static-int8", "ort-dynamic-int8", "torch-static-int8", "prune50-ft",
    "prune50-ft-ort", "prune50-ft-int8", "prune50-ft-torch-int8", "prune75-ft-ort",
    "prune75-ft-int8", "distill50-int8", "ort-fp16", "torch-bf16",
)


def prune_steps(sparsity: float, finetune_epochs: int | None) -> list[dict[str, Any]]:
    """A structured-l2 step; without ``finetune_epochs`` the fine-tune (epochs, learning rate,
    optimizer) is the pruned model's own default (``PruningConfig.for_model``)."""
    step: dict[str, Any] = {"method": "structured-l2", "sparsity": float(sparsity)}
    if finetune_epochs is not None:
        step["finetune_epochs"] = int(finetune_epochs)
    return [{"prune": step}]


STATIC_INT8 = {"quantize": {"method": "ort-static-int8", "quant_types": "U8S8"}}
# torch INT8 (the quantization area's torch-static-int8; PT2E + compile where it lands):
# measured faster than ONNX Runtime INT8 at batch 64 on some models and CPUs, slower at 1.
TORCH_INT8 = {"quantize": {"method": "torch-static-int8"}}
EXPORT = {"export": {}}


@dataclass(frozen=True)
class Candidate:
    """A named list of recipe steps, and why it was proposed (or skipped)."""

    name: str
    steps: list[dict[str, Any]]
    why: str
    skipped: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _has(isa: list[str], *flags: str) -> bool:
    return any(f in isa for f in flags)


def propose(hardware: Mapping[str, Any], *, family: str | None, finetune_epochs: int | None,
            only: tuple[str, ...] = ()) -> list[Candidate]:
    """Candidates for this CPU/GPU and model; skipped ones carry the reason
    (``finetune_epochs`` None: each pruned candidate fine-tunes with the model's defaults)."""
    isa = list(hardware.get("isa") or [])
    vnni = hardware.get("int8_dot_product", _has(isa, "avx512_vnni", "avx_vnni", "amx_int8"))
    int8_why = {True: "this CPU has VNNI/AMX INT8 dot-product instructions",
                False: "INT8 halves memory traffic even without VNNI (measured, not assumed)",
                None: "INT8 halves memory traffic; whether this CPU has VNNI/AMX is unknown "
                      "(measured, not assumed)"}[vnni]
    ft = None if finetune_epochs is None else int(finetune_epochs)
    p50, p75 = prune_steps(0.5, ft), prune_steps(0.75, ft)
    out = [
        Candidate("ort-fp32", [EXPORT], "ONNX Runtime FP32 of the same weights: the graph "
                  "runtime alone"),
        Candidate("ort-static-int8", [STATIC_INT8], f"static INT8 (U8S8, QDQ): {int8_why}"),
        Candidate("ort-dynamic-int8", [{"quantize": {"method": "ort-dynamic-int8"}}],
                  "dynamic INT8 of the MatMul/Gemm layers (no calibration)"),
        Candidate("torch-static-int8", [TORCH_INT8], "torch static INT8: another INT8 engine; "
                  "which one is faster depends on the model, the batch size and the CPU "
                  f"({int8_why})"),
        Candidate("prune50-ft", p50, "half the channels/neurons removed and fine-tuned (torch "
                  "FP32: the effect of pruning alone)"),
        Candidate("prune50-ft-ort", [*p50, EXPORT], "structured 50 % + fine-tune, served by "
                  "ONNX Runtime FP32"),
        Candidate("prune50-ft-int8", [*p50, STATIC_INT8], "structured 50 % + fine-tune, then "
                  "static INT8: the two gains multiply"),
        Candidate("prune50-ft-torch-int8", [*p50, TORCH_INT8], "structured 50 % + fine-tune, "
                  "then torch static INT8"),
        Candidate("prune75-ft-ort", [*p75, EXPORT], "structured 75 % + fine-tune, ONNX Runtime "
                  "FP32"),
        Candidate("prune75-ft-int8", [*p75, STATIC_INT8], "structured 75 % + fine-tune + static "
                  "INT8: the smallest, if accuracy holds"),
    ]
    if family is not None:
        out.append(Candidate(
            "distill50-int8", [{"distill": {"method": "soft-target", "width": 0.5,
                                            "epochs": 5 if ft is None else max(ft, 2)}},
                               STATIC_INT8],
            "a half-width student distilled from the model, then static INT8"))
    else:
        out.append(Candidate("distill50-int8", [], "", skipped="distillation needs a built-in "
                             "family to scale the student from"))
    # Every variant is timed on the CPU (ONNX Runtime's CPU provider), so only the CPU's own
    # half-precision instructions can make FP16 faster; a GPU does not count here.
    fp16 = _has(isa, "avx512_fp16", "amx_fp16")
    cuda_note = (" (a CUDA GPU is present, but variants are measured on the CPU)"
                 if hardware.get("cuda") else "")
    out.append(Candidate(
        "ort-fp16", [{"quantize": {"method": "ort-fp16"}}],
        "FP16: this CPU computes in half precision natively (AVX512-FP16/AMX-FP16)",
        skipped=None if fp16 else "FP16 only halves the file here: this CPU has no "
        f"AVX512-FP16/AMX-FP16, so ONNX Runtime computes FP16 in FP32{cuda_note}"))
    bf16 = _has(isa, "avx512_bf16", "amx_bf16")
    out.append(Candidate(
        "torch-bf16", [{"quantize": {"method": "torch-bf16"}}],
        "BF16: this CPU has BF16 dot-product instructions",
        skipped=None if bf16 else "no AVX512-BF16/AMX-BF16 on this CPU, so BF16 would be "
        "emulated"))
    if only:
        out = [c for c in out if c.name in only]
    return out
