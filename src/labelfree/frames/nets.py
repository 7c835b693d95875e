"""The fully convolutional networks of seed 004 (one chain, three settings).

All three are the chain ``(5, 20)+, 2×2 max-pool, (5, 48)+, (k, 64, d)+, (3, 80, d)+,
(3, 256, d)+, (1, C)`` with batch normalisation after every layer but the last
(seed 004 Ch.4 §4.3 network; Ch.5 §3.2 SIMPLE / DILATIONS; Ch.7 implementation details):

- ``landmark`` (Ch.4): C = K heatmaps, no dilation, kernels 5-5-3-3-3-1.
- ``simple`` (Ch.5 SIMPLE): the same chain with C = the label dimension.
- ``dilations`` (Ch.5 DILATIONS): kernels 5-5-5-3-3-1 with dilations 2-4-2 on layers 3-5.

The output is at half the input resolution (stride 2). ``width`` scales every hidden layer's
channel count (1.0 = the published widths; the CPU benchmarks use less).

:class:`HypercolumnNet` is Ch.8's embedding network (cross-pixel optical-flow similarity): a
hypercolumn head over a small CNN, also at stride 2.
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


class HypercolumnNet(nn.Module):
    """Image (B, 3, H, W) → per-pixel outputs (B, C, H/2, W/2) from a hypercolumn (seed 004
    Ch.8 §3.3, §4.1).

    The chapter builds sparse hypercolumns from AlexNet's conv1, pool1, conv3, pool5 and fc7,
    interpolated at sampled pixels, then an MLP with one hidden layer. Here the backbone is the
    chain of :class:`FrameNet` (5, 20) (5, 48) (3, 64) (3, 80) (3, 256), each conv + BN + ReLU,
    with 2×2 max-pools after blocks 1, 2 and 4 (strides 2, 4, 4, 8, 8, receptive field ~70 px,
    so one pixel sees a whole 64-px object); every block's output is upsampled bilinearly to
    stride 2 and concatenated (the hypercolumn, 468 channels at width 1), and the MLP is two
    1×1 convolutions. Computing it at every stride-2 cell and sampling the loss's pixels from
    it equals the sparse hypercolumn at those cells (interpolation commutes with sampling), and
    costs little at the image sizes of a CPU run. ``learn_sigma`` adds the learnable log σ² of
    the flow kernel (Ch.8 §3.1) as a parameter, so the optimiser and checkpoints carry it.
    """

    POOL_AFTER = (0, 1, 3)

    def __init__(
        self,
        out_channels: int = 16,
        width: float = 1.0,
        hidden: int = 64,
        sigma2: float | None = None,
    ):
        super().__init__()
        self.out_channels, self.width, self.hidden = out_channels, width, hidden
        chans = [max(4, round(c * width)) for c in (20, 48, 64, 80, 256)]
        blocks: list[nn.Module] = []
        c_in = 3
        for i, (c, k) in enumerate(zip(chans, (5, 5, 3, 3, 3), strict=True)):
            layers: list[nn.Module] = [
                nn.Conv2d(c_in, c, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            if i in self.POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.columns = sum(chans)
        self.mlp = nn.Sequential(
            nn.Conv2d(self.columns, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.sigma2 = sigma2
        if sigma2 is not None:
            self.log_sigma2 = nn.Parameter(torch.tensor(float(sigma2)).log())

    def hypercolumn(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 468·width, H/2, W/2): every block's output at stride 2, concatenated."""
        size = (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)
        taps = []
        for block in self.blocks:
            x = block(x)
            taps.append(
                x
                if tuple(x.shape[-2:]) == size
                else nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            )
        return torch.cat(taps, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.hypercolumn(x))

    def config(self) -> dict[str, Any]:
        return {
            "type": "hypercolumn",
            "out_channels": self.out_channels,
            "width": self.width,
            "hidden": self.hidden,
            "sigma2": self.sigma2,
        }


def build_frame_net(config: dict[str, Any]) -> nn.Module:
    """The network a model file describes (its ``config()``)."""
    config = dict(config)
    kind = config.pop("type", "frame")
    if kind == "hypercolumn":
        return HypercolumnNet(**config)
    if kind == "deepmatching":
        from labelfree.nets.deepmatching_net import DeepMatchingNet

        return DeepMatchingNet(**config)
    return FrameNet(**config)
