"""The fully convolutional networks of seed 004 (one chain, three settings).

All three are the chain ``(5, 20)+, 2×2 max-pool, (5, 48)+, (k, 64, d)+, (3, 80, d)+,
(3, 256, d)+, (1, C)`` with batch normalisation after every layer but the last
(seed 004 Ch.4 §4.3 network; Ch.5 §3.2 SIMPLE / DILATIONS; Ch.7 implementation details):

- ``landmark`` (Ch.4): C = K heatmaps, no dilation, kernels 5-5-3-3-3-1.
- ``simple`` (Ch.5 SIMPLE): the same chain with C = the label dimension.
- ``dilations`` (Ch.5 DILATIONS): kernels 5-5-5-3-3-1 with dilations 2-4-2 on layers 3-5.

The output is at half the input resolution (stride 2). ``width`` scales every hidden layer's
channel count (1.0 = the published widths; the CPU benchmarks use less).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCHS = ("landmark", "simple", "dilations")
STRIDE = 2


class FrameNet(nn.Module):
    """Image (B, 3, H, W) → maps (B, C, H/2, W/2)."""

    def __init__(self, arch: str = "simple", out_channels: int = 3, width: float = 1.0):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown frame network {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch, self.out_channels, self.width = arch, out_channels, width
        chans = [max(4, round(c * width)) for c in (20, 48, 64, 80, 256)]
        if arch == "dilations":
            kernels, dils = (5, 5, 5, 3, 3), (1, 1, 2, 4, 2)
        else:
            kernels, dils = (5, 5, 3, 3, 3), (1, 1, 1, 1, 1)
        layers: list[nn.Module] = []
        c_in = 3
        for i, (c, k, d) in enumerate(zip(chans, kernels, dils, strict=True)):
            layers += [
                nn.Conv2d(c_in, c, k, padding=d * (k - 1) // 2, dilation=d, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            if i == 0:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        layers.append(nn.Conv2d(c_in, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, "out_channels": self.out_channels, "width": self.width}


def build_frame_net(config: dict[str, Any]) -> FrameNet:
    return FrameNet(**config)
