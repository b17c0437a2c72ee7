"""Useful work and distance to the hardware limit: MACs without zero-padding taps, achieved
GMAC/s per batch size, and their share of this CPU's measured FP32 or INT8 peak."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["conv_useful_macs", "efficiency", "onnx_precision", "torch_padding_waste",
           "valid_taps"]

_INT8_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
             "MatMulInteger", "ConvInteger", "MatMulNBits", "QGemm"}


def valid_taps(size: int, out: int, kernel: int, stride: int, pad_begin: int,
               dilation: int) -> int:
    """(output position, kernel tap) pairs of one dimension that land on real input.

    A 3-tap kernel over a 1-wide input with padding 1 gives 1 such pair per output.
    """
    starts = np.arange(out)[:, None] * stride - pad_begin
    pos = starts + np.arange(kernel)[None, :] * dilation
    return int(((pos >= 0) & (pos < size)).sum())


def conv_useful_macs(in_spatial: Sequence[int], out_spatial: Sequence[int],
                     kernel: Sequence[int], *, stride: Sequence[int], pad_begin: Sequence[int],
                     dilation: Sequence[int], in_per_group: int, out_channels: int) -> int:
    """MACs of one sample's convolution counting only taps that touch real input."""
    taps = 1
    for d in range(len(kernel)):
        taps *= valid_taps(int(in_spatial[d]), int(out_spatial[d]), int(kernel[d]),
                           int(stride[d]), int(pad_begin[d]), int(dilation[d]))
    return int(out_channels) * int(in_per_group) * taps


def onnx_conv_pads(attrs: Mapping[str, Any], in_spatial: Sequence[int],
                   out_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                   dilation: Sequence[int]) -> list[int]:
    """The leading pads of an ONNX Conv (explicit ``pads`` or ``auto_pad``)."""
    nd = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for d in range(nd):
            total = max((out_spatial[d] - 1) * stride[d] + (kernel[d] - 1) * dilation[d] + 1
                        - in_spatial[d], 0)
            out.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        return out
    if auto == "VALID":
        return [0] * nd
    pads = list(attrs.get("pads") or [])
    return pads[:nd] if len(pads) >= nd else [0] * nd


def onnx_node_conv_macs(node: Any, shapes: Mapping[str, list[int]]) -> int | None:
    """Useful MACs of one ONNX Conv / ConvInteger / QLinearConv node, or None (no shapes)."""
    from onnx import helper

    w = shapes.get(node.input[3 if node.op_type == "QLinearConv" else 1])
    x, y = shapes.get(node.input[0]), shapes.get(node.output[0])
    if not w or not x or not y or len(w) < 3 or 0 in x[2:] or 0 in y:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nd = len(w) - 2
    kernel = list(w[2:])
    stride = list(attrs.get("strides") or [1] * nd)
    dilation = list(attrs.get("dilations") or [1] * nd)
    pads = onnx_conv_pads(attrs, x[2:], y[2:], kernel, stride, dilation)
    per_sample = conv_useful_macs(x[2:], y[2:], kernel, stride=stride, pad_begin=pads,
                                  dilation=dilation, in_per_group=w[1], out_channels=w[0])
    return per_sample * max(int(y[0]), 1)


def torch_padding_waste(model: Any, example: Any) -> int:
    """MACs a plain count gives to zero-padding taps of ``nn.Conv*d`` layers (one pass)."""
    import torch

    waste = [0]

    def hook(mod: Any, inputs: tuple, output: Any) -> None:
        if getattr(mod, "padding_mode", "zeros") != "zeros" or not inputs:
            return
        x = inputs[0]
        nd = x.dim() - 2
        kernel = list(mod.kernel_size)
        stride, dilation = list(mod.stride), list(mod.dilation)
        out_sp = list(output.shape[2:])
        if isinstance(mod.padding, str):  # 'same': what PyTorch pads in front
            pads = [((k - 1) * d) // 2 if mod.padding == "same" else 0
                    for k, d in zip(kernel, dilation)]
        else:
            pads = list(mod.padding)
        cin = mod.in_channels // mod.groups
        full = int(np.prod(out_sp)) * mod.out_channels * cin * int(np.prod(kernel))
        useful = conv_useful_macs(list(x.shape[2:]), out_sp, kernel, stride=stride,
                                  pad_begin=pads[:nd], dilation=dilation, in_per_group=cin,
                                  out_channels=mod.out_channels)
        waste[0] += (full - useful) * int(x.shape[0])

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convs)]
    if not handles:  # no conv modules (e.g. an exported program): nothing to run the model for
        return 0
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return waste[0]


def onnx_precision(path: str | Path) -> str:
    """``"int8"`` where the graph holds quantized operators, else ``"fp32"``."""
    from core.artifacts._onnx import read_graph

    model = read_graph(path)
    return "int8" if any(n.op_type in _INT8_OPS for n in model.graph.node) else "fp32"


def torch_precision(model: Any) -> str:
    """``"int8"`` for a module with quantized weights or quantize ops, else ``"fp32"``."""
    import torch

    try:
        for value in model.state_dict().values():
            if isinstance(value, torch.Tensor) and (
                    value.is_quantized or value.dtype in (torch.int8, torch.uint8)):
                return "int8"
    except Exception:
        pass
    graph = getattr(model, "graph", None)
    if graph is not None and any("quantize" in str(getattr(n, "target", ""))
                                 for n in getattr(graph, "nodes", [])):
        return "int8"
    if any("quantized" in type(m).__module__ for m in model.modules()):
        return "int8"
    return "fp32"


def precision_of(model: Any, files: Sequence[Path]) -> str:
    """The arithmetic a variant runs in, for choosing which peak it is measured against."""
    onnx_file = next((Path(f) for f in files if str(f).endswith(".onnx")), None)
    inner = getattr(model, "model", model)
    if type(inner).__name__ == "InferenceSession" or isinstance(model, (str, Path)):
        path = onnx_file or getattr(inner, "_model_path", None) or model
        try:
            return onnx_precision(path)
        except Exception:
            return "fp32"
    try:
        return torch_precision(inner)
    except Exception:
        return "fp32"


def efficiency(macs: int | None, latency_ms: Mapping[str, Mapping[str, float]], *,
               precision: str, threads: int, peak: Mapping[str, Any] | None
               ) -> dict[str, Any] | None:
    """Achieved useful GMAC/s per batch size and its share of the measured peak."""
    if not macs:
        return None
    cores = (peak or {}).get("threads_all")
    label = "1" if threads == 1 else ("all" if threads == cores else None)
    ref = ((peak or {}).get(precision if precision in ("fp32", "int8") else "fp32")
           or {}).get(label) if label else None
    out: dict[str, Any] = {"useful_macs_per_sample": int(macs), "precision": precision,
                           "peak_gmacs": ref, "peak_threads": label, "by_batch": {}}
    for bs, lat in latency_ms.items():
        p50 = lat.get("p50")
        if not p50:
            continue
        rate = int(macs) * int(bs) / (p50 / 1000.0) / 1e9
        out["by_batch"][bs] = {"gmacs_per_s": rate,
                               "share_of_peak": rate / ref if ref else None}
    if ref is None:
        out["note"] = (f"no measured peak at {threads} threads (peaks are measured at 1 thread "
                       f"and at all {cores} cores)") if peak else "no measured peak"
    return out


def target_extra(target: Any, latency_ms: Mapping[str, Any], other_threads: Mapping[str, Any],
                 macs: int | None, precision: str) -> dict[str, Any]:
    """What a Measurement records about its target: the target, the budget check per batch
    size, the figures at the other thread counts, and the efficiency at each."""
    from core.measure._peak import peaks

    try:
        peak = peaks() if macs else None
    except Exception:  # the microbenchmark must never fail a measurement
        peak = None
    first = target.thread_counts[0]
    extra: dict[str, Any] = {
        "target": target.to_dict(),
        "efficiency": efficiency(macs, latency_ms, precision=precision, threads=first,
                                 peak=peak),
    }
    if target.latency_budget_ms is not None:
        extra["within_budget"] = {bs: target.within_budget(latency_ms.get(str(bs), {})
                                                           .get("p50"))
                                  for bs in map(str, target.batch_sizes)}
    if other_threads:
        extra["latency_by_threads"] = dict(other_threads)
        extra["efficiency_by_threads"] = {
            n: efficiency(macs, lat, precision=precision, threads=int(n), peak=peak)
            for n, lat in other_threads.items()}
    return extra


def _layer_precision(kind: str) -> str:
    text = kind.lower()
    return "int8" if kind in _INT8_OPS or "quantized" in text or "integer" in text or \
        text.startswith("qlinear") else "fp32"


def heaviest_layers(layers: Sequence[Mapping[str, Any]], *, threads: int,
                    peak: Mapping[str, Any] | None, top: int = 5) -> list[dict[str, Any]]:
    """The slowest layers of a profile with their useful GMAC/s and share of the measured
    peak of their arithmetic (FP32 or INT8): which layers waste the hardware."""
    cores = (peak or {}).get("threads_all")
    label = "1" if threads == 1 else ("all" if threads == cores else None)
    out = []
    for lay in sorted(layers, key=lambda x: x.get("time_ms") or 0, reverse=True)[:top]:
        macs, ms = lay.get("macs"), lay.get("time_ms") or 0
        precision = _layer_precision(str(lay.get("kind", "")))
        ref = ((peak or {}).get(precision) or {}).get(label) if label else None
        rate = macs / (ms / 1000.0) / 1e9 if macs and ms > 0 else None
        out.append({"name": lay.get("name"), "kind": lay.get("kind"), "time_ms": ms,
                    "share_of_time": lay.get("share"), "macs": macs, "precision": precision,
                    "gmacs_per_s": rate,
                    "share_of_peak": rate / ref if rate is not None and ref else None})
    return out


def onnx_runtime_names(path: str | Path) -> dict[str, int]:
    """Useful MACs per sample keyed by the node names ONNX Runtime's profiler reports: the
    graph's names, and ``<output>_nchwc`` for nodes its NCHWc layout pass rewrote (an
    activation fused into a Conv keeps the activation's output name: the Conv's MACs)."""
    from core.artifacts._onnx import read_graph
    from core.measure._counting import onnx_node_macs

    macs = onnx_node_macs(path) or {}
    graph = read_graph(path).graph
    producer = {out: node for node in graph.node for out in node.output}
    found = dict(macs)
    for node in graph.node:
        own = macs.get(node.name)
        if own is None and len(node.input) >= 1 and node.input[0] in producer:
            own = macs.get(producer[node.input[0]].name)  # e.g. Relu after a Conv
        for out in node.output:
            if own:
                found[f"{out}_nchwc"] = own
    return found
