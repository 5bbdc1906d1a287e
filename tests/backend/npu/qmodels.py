"""Small quantized models for the partitioner/lowering tests: a torch net -> ONNX -> quantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.calibrate import calibrate
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.quantize import quantize_model
from tests.frontend.torch_onnx import export_onnx


class MixedNet(nn.Module):
    """Conv, depthwise, hardswish, SE block, residual add, concat, pools, upsample, dense,
    softmax (a float layer: the CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.c2 = nn.Conv2d(16, 12, 3, padding=1)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.hardswish(self.c1(x))
        y = nn.functional.relu6(self.pw(self.dw(x)))
        s = torch.sigmoid(self.se2(torch.relu(self.se1(y.mean((2, 3), keepdim=True)))))
        y = y * s + x
        z = torch.cat([y, torch.sigmoid(x) * 2.0], dim=1)
        z = nn.functional.max_pool2d(z, 2)
        z = nn.functional.interpolate(z, scale_factor=2.0, mode="nearest")
        z = nn.functional.avg_pool2d(self.c2(z), 2)
        z = z.permute(0, 2, 3, 1)
        return torch.softmax(self.fc(z.reshape(1, -1)), dim=1)


def quantized(
    model: onnx.ModelProto | Path,
    samples: int = 2,
    seed: int = 0,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[QuantizedModel, FloatExecutor, list[dict[str, np.ndarray]]]:
    """Quantize ``model`` on ``samples`` standard-normal inputs; returns the feeds too."""
    mod, _ = load(model, input_shapes=input_shapes)
    graph = extract_graph(Pipeline(graph_passes())(mod))
    fx = FloatExecutor(graph)
    rng = np.random.default_rng(seed)
    feeds = [
        {n: rng.standard_normal(ty.shape).astype(np.float32) for n, ty in graph.inputs}
        for _ in range(samples)
    ]
    cfg = QuantConfig()
    observers, _ = calibrate(graph, iter(feeds), cfg, executor=fx)
    return quantize_model(graph, observers, cfg), fx, feeds


def mixed_net_onnx(size: int = 16) -> onnx.ModelProto:
    torch.manual_seed(0)
    return export_onnx(MixedNet(), (torch.randn(1, 3, size, size),), names=["x"])


class SliceNet(nn.Module):
    """Channel slices of rank-4 and rank-3 tensors (YOLOv8's split and DFL head)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c1(x))
        a, b = y[:, :4], y[:, 4:]
        z = self.c2(a + b).reshape(1, 6, -1)
        return torch.cat([z[:, 2:5], z[:, :2]], dim=1)


def slice_net_onnx() -> onnx.ModelProto:
    torch.manual_seed(1)
    return export_onnx(SliceNet(), (torch.randn(1, 3, 8, 8),), names=["x"])
