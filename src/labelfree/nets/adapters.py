"""Pretrained backbones from transformers, timm and torchvision, as feature-map modules.

Each adapter maps images ``(B, 3, H, W)`` in [0, 1] to a feature map ``(B, C, h, w)`` and has
``out_channels``, like the built-in backbones. Inside, it resizes the input to the size the
network expects (when it declares one), normalises it with the network's mean/std (ImageNet's
when it declares none) and, for transformers, turns patch tokens into a spatial grid.

Weights come from local files. Nothing is downloaded unless ``allow_download=True`` is passed
(off by default: the project's machines are offline at run time).

``hf:<dir or hub id>``
    ``transformers.AutoModel`` (``local_files_only`` unless ``allow_download``). Conv models
    (ResNet, ConvNeXt, RegNet, ...) return their ``last_hidden_state`` map; ViT-like models
    (ViT, DeiT, DINOv2, CLIP/SigLIP vision towers, ...) drop their prefix tokens (CLS,
    distillation, registers) and reshape the patch tokens into ``(B, C, h, w)``.
``timm:<model>``
    ``timm.create_model(model, pretrained=False, num_classes=0)`` with ``weights=<file>``;
    ``forward_features`` gives the map (tokens are reshaped as above).
``torchvision:<model>``
    ``torchvision.models.get_model(model, weights=None)`` with ``weights=<file>``; the global
    pooling and classifier are dropped.

timm and torchvision are imported only when used; a missing one raises an :class:`ImportError`
saying how to install it.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from labelfree.nets.adapter_base import (  # noqa: F401  (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    tokens_to_map,
)
from labelfree.nets.hf_adapter import HFBackbone
from labelfree.nets.torch_adapters import TimmBackbone, TorchvisionBackbone
from labelfree.nets.weight_files import load_matching_state, load_weights_file

__all__ = [
    "HFBackbone",
    "TimmBackbone",
    "TorchvisionBackbone",
    "build_adapter",
    "load_matching_state",
    "load_weights_file",
    "tokens_to_map",
]


def build_adapter(name: str, **kw: Any) -> nn.Module:
    """An adapter backbone from ``"hf:<dir or id>"``, ``"timm:<model>"`` or ``"torchvision:<model>"``.

    Keyword arguments go to :class:`HFBackbone`, :class:`TimmBackbone` or
    :class:`TorchvisionBackbone`. ``weights`` is not accepted for ``hf:`` (the folder holds
    the weights).
    """
    prefix, _, rest = name.partition(":")
    if not rest:
        raise ValueError(f"backbone {name!r}: nothing after {prefix + ':'!r}")
    if prefix == "hf":
        if kw.pop("weights", None) is not None:
            raise ValueError("hf: backbones take their weights from the folder/hub id in the name")
        return HFBackbone(rest, **kw)
    if prefix == "timm":
        return TimmBackbone(rest, **kw)
    if prefix == "torchvision":
        return TorchvisionBackbone(rest, **kw)
    raise ValueError(f"unknown adapter prefix {prefix!r}; choose one of hf:, timm:, torchvision:")
