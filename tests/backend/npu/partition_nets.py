"""Seeded random nets for the partitioner tests: DAGs of NPU layers, CPU layers among them.

Each block reads one of the last few tensors (so branches, siblings and joins
occur) and is one of: convolution (+ ReLU), depthwise convolution, SiLU, max and
average pool, residual add, concat of two tensors, a transpose pair, a channel
softmax (a float layer: the CPU), a grouped convolution (groups 2, which the
NPU refuses: the CPU with its reason). Both operands of an add or concat may be one
tensor (``x + x``: the partition reads ``x`` once).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from tests.frontend.torch_onnx import export_onnx

CHANNELS = 8
KINDS = (
    "conv",
    "depthwise",
    "silu",
    "max_pool",
    "avg_pool",
    "add",
    "concat",
    "transpose",
    "softmax",
    "grouped",
)


class RandomNet(nn.Module):
    """``blocks`` random blocks over ``(1, 8, 8, 8)`` tensors (module docstring)."""

    def __init__(self, seed: int, blocks: int = 9) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.plan: list[tuple[str, int, int]] = []  # kind, input index, second input index
        self.layers = nn.ModuleList()
        for i in range(blocks):
            kind = KINDS[int(rng.integers(len(KINDS)))]
            a = i - int(rng.integers(min(i, 3) + 1))  # one of the last 4 tensors (0: x)
            b = i - int(rng.integers(min(i, 3) + 1))
            self.plan.append((kind, a, b))
            c = CHANNELS
            layer: nn.Module = nn.Identity()
            if kind == "conv":
                layer = nn.Conv2d(c, c, 3, padding=1)
            elif kind == "depthwise":
                layer = nn.Conv2d(c, c, 3, padding=1, groups=c)
            elif kind == "concat":
                layer = nn.Conv2d(2 * c, c, 1)
            elif kind == "grouped":
                layer = nn.Conv2d(c, c, 3, padding=1, groups=2)
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = [x]
        for (kind, a, b), layer in zip(self.plan, self.layers, strict=True):
            u, v = values[a], values[b]
            if kind == "conv":
                y = torch.relu(layer(u))
            elif kind in ("depthwise", "grouped"):
                y = layer(u)
            elif kind == "silu":
                y = u * torch.sigmoid(u)
            elif kind == "max_pool":
                y = nn.functional.max_pool2d(u, 3, stride=1, padding=1)
            elif kind == "avg_pool":
                y = nn.functional.avg_pool2d(u, 3, stride=1, padding=1)
            elif kind == "add":
                y = u + v
            elif kind == "concat":
                y = layer(torch.cat([u, v], dim=1))
            elif kind == "transpose":
                y = u.permute(0, 2, 3, 1).permute(0, 3, 1, 2) * 0.5
            else:  # softmax
                y = torch.softmax(u, dim=1)
            values.append(y)
        return values[-1] + values[-2]


def random_net_onnx(seed: int) -> onnx.ModelProto:
    torch.manual_seed(seed)
    return export_onnx(RandomNet(seed), (torch.randn(1, CHANNELS, 8, 8),), names=["x"])
