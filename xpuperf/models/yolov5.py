"""YOLOv5 (Ultralytics, v6.0+ layout), written out: its only source is the
ultralytics repository, fetched by torch.hub at run time, which we neither
reach offline nor want to execute.

yolov5s.yaml scaled by depth_multiple and width_multiple: a CSP backbone (Conv,
C3 blocks), SPPF, a PAN neck (top-down then bottom-up with C3 blocks) and the
Detect head on strides 8, 16, 32, in the form YOLOv5 exports to ONNX: the decoded
detections [batch, boxes, 5 + classes] (xywh in pixels, objectness, class
scores) and the three raw head maps [batch, anchors, h, w, 5 + classes].
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from xpuperf.zoo import ModelSpec

# yolov5s.yaml: anchors (w, h pairs in pixels) per output stride.
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
STRIDES = (8, 16, 32)


class Conv(nn.Module):
    """Conv2d + BatchNorm + SiLU, 'same' padding."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool):
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c2, 1), Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(self, c1: int, c2: int, n: int, shortcut: bool = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1, self.cv2, self.cv3 = Conv(c1, c_, 1), Conv(c1, c_, 1), Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c_, 1), Conv(4 * c_, c2, 1)
        self.m = nn.MaxPool2d(k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], dim=1))


class Detect(nn.Module):
    def __init__(self, num_classes: int, channels: tuple[int, ...]):
        super().__init__()
        self.no, self.na = num_classes + 5, len(ANCHORS[0]) // 2
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float).view(len(ANCHORS), -1, 2))
        for conv, stride in zip(self.m, STRIDES):  # YOLOv5's prior-informed bias init
            b = conv.bias.view(self.na, -1)
            b.data[:, 4] += math.log(8 / (640 / stride) ** 2)
            b.data[:, 5:] += math.log(0.6 / (num_classes - 0.99))

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        raw, boxes = [], []
        for i, (x, stride) in enumerate(zip(feats, STRIDES)):
            x = self.m[i](x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(x)
            y = x.sigmoid()
            gy, gx = torch.meshgrid(torch.arange(ny, dtype=torch.float, device=x.device),
                                    torch.arange(nx, dtype=torch.float, device=x.device), indexing="ij")
            grid = torch.stack((gx, gy), dim=2).view(1, 1, ny, nx, 2) - 0.5
            xy = (y[..., :2] * 2 + grid) * stride
            wh = (y[..., 2:4] * 2) ** 2 * self.anchors[i].view(1, self.na, 1, 1, 2)
            boxes.append(torch.cat((xy, wh, y[..., 4:]), dim=-1).view(bs, -1, self.no))
        return (torch.cat(boxes, dim=1), *raw)


class YOLOv5(nn.Module):
    """Attribute names carry the layer's index in yolov5s.yaml (b: backbone, h: head)."""

    def __init__(self, depth_multiple: float, width_multiple: float, num_classes: int):
        super().__init__()
        def w(c: int) -> int:  # channels, rounded up to a multiple of 8 as YOLOv5 does
            return math.ceil(c * width_multiple / 8) * 8

        def d(n: int) -> int:
            return max(round(n * depth_multiple), 1)

        self.b0 = Conv(3, w(64), 6, 2, 2)
        self.b1, self.b2 = Conv(w(64), w(128), 3, 2), C3(w(128), w(128), d(3))
        self.b3, self.b4 = Conv(w(128), w(256), 3, 2), C3(w(256), w(256), d(6))
        self.b5, self.b6 = Conv(w(256), w(512), 3, 2), C3(w(512), w(512), d(9))
        self.b7, self.b8 = Conv(w(512), w(1024), 3, 2), C3(w(1024), w(1024), d(3))
        self.b9 = SPPF(w(1024), w(1024), 5)
        self.h10, self.h13 = Conv(w(1024), w(512), 1), C3(w(1024), w(512), d(3), shortcut=False)
        self.h14, self.h17 = Conv(w(512), w(256), 1), C3(w(512), w(256), d(3), shortcut=False)
        self.h18, self.h20 = Conv(w(256), w(256), 3, 2), C3(w(512), w(512), d(3), shortcut=False)
        self.h21, self.h23 = Conv(w(512), w(512), 3, 2), C3(w(1024), w(1024), d(3), shortcut=False)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.detect = Detect(num_classes, (w(256), w(512), w(1024)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(images)))))
        p4 = self.b6(self.b5(p3))
        x10 = self.h10(self.b9(self.b8(self.b7(p4))))
        x14 = self.h14(self.h13(torch.cat([self.up(x10), p4], dim=1)))
        out3 = self.h17(torch.cat([self.up(x14), p3], dim=1))
        out4 = self.h20(torch.cat([self.h18(out3), x14], dim=1))
        out5 = self.h23(torch.cat([self.h21(out4), x10], dim=1))
        return self.detect([out3, out4, out5])


def build(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    return YOLOv5(**config)
