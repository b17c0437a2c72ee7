"""Torch modules that a converted ONNX graph uses besides onnx2torch's own."""

from __future__ import annotations

from typing import Any

import torch


class StaticReshape(torch.nn.Module):
    """Reshape to a constant target (0 copies the input's dim) without reading a tensor, so
    ``torch.export`` (PT2E quantization, the dynamo exporter) can trace it; onnx2torch's own
    Reshape inspects its shape tensor at run time, a data-dependent branch export refuses."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = [int(s) for s in shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])


class ReshapeLike(torch.nn.Module):
    """Reshape ``x`` to ``like``'s shape: exports as Reshape(x, Shape(like)), two nodes."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.reshape_as(like)


class OnnxAttention(torch.nn.Module):
    """ONNX Attention (opset 23+) without a KV cache: torch's scaled_dot_product_attention on
    4-D (batch, heads, seq, head size) inputs, or 3-D (batch, seq, hidden) split into heads."""

    def __init__(self, *, is_causal: bool, scale: float | None, q_heads: int,
                 kv_heads: int) -> None:
        super().__init__()
        self.is_causal, self.scale = is_causal, scale
        self.q_heads, self.kv_heads = q_heads, kv_heads

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        flat = q.dim() == 3
        if flat:
            q, k, v = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)
                       for t, heads in ((q, self.q_heads), (k, self.kv_heads),
                                        (v, self.kv_heads)))
        y = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=self.is_causal, scale=self.scale,
            enable_gqa=bool(q.shape[1] != k.shape[1]))  # head counts are fixed
        return y.transpose(1, 2).flatten(2) if flat else y


class FixedBatch(torch.nn.Module):
    """Runs a graph whose batch size is baked into its operators on any number of rows: in
    chunks of that size, the last one padded by repeating its last row (padding rows are
    dropped from the output, so they get no gradient). The chunks run at once under
    ``torch.vmap`` (18x faster than a loop on a batch-1 ViT here), else one by one."""

    def __init__(self, inner: torch.nn.Module, batch: int) -> None:
        super().__init__()
        self.inner = inner
        self.batch = batch
        self.vmap_works: bool | None = None  # found out on the first call

    def forward(self, x: torch.Tensor) -> Any:
        rows = x.shape[0]
        chunks = -(-rows // self.batch)
        padded = torch.cat([x, x[-1:].expand(chunks * self.batch - rows, *x.shape[1:])])
        outs = None
        if self.vmap_works is not False:
            try:
                stacked = padded.reshape(chunks, self.batch, *x.shape[1:])
                outs = [o.reshape(chunks * self.batch, *o.shape[2:]) for o in outputs_of(
                    torch.vmap(self.inner, randomness="different")(stacked))]
                self.vmap_works = True
            except Exception:
                if self.vmap_works:  # it worked before: this is a real error
                    raise
                self.vmap_works = False
        if outs is None:
            parts = [outputs_of(self.inner(padded[i:i + self.batch]))
                     for i in range(0, len(padded), self.batch)]
            outs = [torch.cat(column) for column in zip(*parts)]
        outs = [o[:rows] for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)


def outputs_of(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


class ClosingSoftmax(torch.nn.Module):
    """A Softmax that is a graph output (Keras/tf2onnx and many converters export
    probabilities): probabilities in eval mode and whenever exported, so the shipped model
    keeps the user's output; log-probabilities in train mode, so every cross-entropy or KD
    loss on the output is exact (log_softmax of log-probabilities is themselves) instead of
    treating probabilities as logits. ``torch.export`` (PT2E, QAT included) keeps probabilities."""

    def __init__(self, probs: torch.nn.Module, log_probs: torch.nn.Module) -> None:
        super().__init__()
        self.probs, self.log_probs = probs, log_probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not torch.compiler.is_exporting():
            return self.log_probs(x)
        return self.probs(x)


class StaticResize(torch.nn.Module):
    """Resize by constant spatial scales or sizes (F.interpolate) without reading a tensor:
    onnx2torch's Resize calls ``.tolist()`` on its scales at run time, a data-dependent
    guard that ``torch.export`` (PT2E quantization, the pruned model's .pt2) refuses."""

    def __init__(self, mode: str, align_corners: bool | None, *,
                 scales: list[float] | None = None, sizes: list[int] | None = None) -> None:
        super().__init__()
        self.mode, self.align_corners = mode, align_corners
        self.scales, self.sizes = scales, sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, size=self.sizes, scale_factor=self.scales,
                                               mode=self.mode, align_corners=self.align_corners)
