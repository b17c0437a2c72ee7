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


class FixedBatch(torch.nn.Module):
    """Runs a graph whose batch size is baked into its operators on any number of rows: in
    chunks of that size, the last one padded by repeating its last row (padding rows are
    dropped from the output, so they get no gradient)."""

    def __init__(self, inner: torch.nn.Module, batch: int) -> None:
        super().__init__()
        self.inner = inner
        self.batch = batch

    def forward(self, x: torch.Tensor) -> Any:
        chunks = []
        for start in range(0, x.shape[0], self.batch):
            part = x[start:start + self.batch]
            rows = part.shape[0]
            if rows < self.batch:
                pad = part[-1:].expand(self.batch - rows, *part.shape[1:])
                part = torch.cat([part, pad])
            chunks.append([o[:rows] for o in outputs_of(self.inner(part))])
        outs = [torch.cat(parts) for parts in zip(*chunks)]
        return outs[0] if len(outs) == 1 else tuple(outs)


def outputs_of(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]
