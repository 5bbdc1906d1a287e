"""Small nets whose CPU layers sit between NPU partitions, for the CPU-region tests."""

from __future__ import annotations

import onnx
import torch
from torch import nn

from tests.frontend.torch_onnx import export_onnx


def shuffle(y: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle, through a 5-D tensor the NPU does not take."""
    n, c, h, w = y.shape
    return y.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleNet(nn.Module):
    """Only integer CPU layers: two channel shuffles between three NPU convs."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.c3 = nn.Conv2d(8, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = shuffle(torch.relu(self.c1(x)), 2)
        y = shuffle(torch.relu(self.c2(y)), 4)
        return self.c3(y)


def shuffle_net_onnx() -> onnx.ModelProto:
    torch.manual_seed(3)
    return export_onnx(ShuffleNet(), (torch.randn(1, 3, 8, 8),), names=["x"])


class RegionNet(nn.Module):
    """NPU convs with CPU regions between them: a channel shuffle through a 5-D tensor
    (integer layers the NPU does not take), a softmax and a layer norm (float layers),
    and a float matmul feeding an output."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.relu(self.c2(shuffle(torch.relu(self.c1(x)), 2)))
        s = torch.softmax(y, dim=1)
        z = self.c3(s)
        t = self.norm(z.permute(0, 2, 3, 1))
        return z, torch.matmul(t, t.transpose(-1, -2))


def region_net_onnx() -> onnx.ModelProto:
    torch.manual_seed(2)
    return export_onnx(RegionNet(), (torch.randn(1, 3, 8, 8),), names=["x"])
