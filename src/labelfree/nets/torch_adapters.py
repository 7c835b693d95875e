"""The ``timm:`` and ``torchvision:`` adapters: models built by their library and loaded from a
local state-dict file (:mod:`labelfree.nets.adapters`)."""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from labelfree.nets.adapter_base import _AdapterBase, _as_size, _import_optional, tokens_to_map
from labelfree.nets.weight_files import load_matching_state, load_weights_file

__all__ = ["TimmBackbone", "TorchvisionBackbone"]


class TimmBackbone(_AdapterBase):
    """A timm model (``forward_features``) as a feature-map backbone.

    Args:
        name: the timm model name.
        weights: a local state-dict file; classifier entries are dropped. ``None``: random
            weights, or timm's pretrained ones when ``allow_download=True``.
        allow_download: let timm fetch its pretrained weights.
        input_size: resize target; ``None``: the model's ``pretrained_cfg["input_size"]``;
            ``0``: never resize.
        image_size: the caller's image side; unused (``input_size`` decides the resize).
    """

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        input_size: int | tuple[int, int] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        timm = _import_optional("timm", "timm")
        pretrained = weights is None and allow_download
        self.model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        if weights is not None:
            load_matching_state(self.model, load_weights_file(weights), f"timm:{name}")
        elif not pretrained:
            warnings.warn(f"timm:{name} has random weights (no weights file given)", stacklevel=2)
        cfg = dict(getattr(self.model, "pretrained_cfg", None) or {})
        size = _as_size(cfg.get("input_size")) if input_size is None else _as_size(input_size)
        self._setup_input(cfg.get("mean"), cfg.get("std"), size)
        self.n_prefix = int(getattr(self.model, "num_prefix_tokens", 0))
        self.out_channels = int(getattr(self.model, "num_features", 0)) or (
            self._infer_out_channels()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(self.prepare(x))
        if feats.ndim == 3:
            return tokens_to_map(feats, None, self.n_prefix)
        if feats.shape[1] != self.out_channels and feats.shape[-1] == self.out_channels:
            feats = feats.permute(0, 3, 1, 2)  # channels-last maps (Swin)
        return feats


class TorchvisionBackbone(_AdapterBase):
    """A torchvision classification network, minus pooling and classifier.

    Args:
        name: the ``torchvision.models`` builder name (``resnet50``, ``vgg16``, ...).
        weights: a local state-dict file. ``None``: random weights, or torchvision's default
            weights when ``allow_download=True``.
        allow_download: let torchvision fetch its default weights.
        input_size: resize target; ``None`` (torchvision models declare none) / ``0``: no
            resize. Pass 224 to match ImageNet training.
        image_size: the caller's image side; unused (``input_size`` decides the resize).

    ResNet-like models keep every child before ``avgpool``; models with a ``features`` module
    (VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt) keep it.
    """

    def __init__(
        self,
        name: str,
        weights: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        input_size: int | tuple[int, int] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        tv = _import_optional("torchvision", "torchvision")
        download = weights is None and allow_download
        model = tv.models.get_model(name, weights="DEFAULT" if download else None)
        if weights is not None:
            load_matching_state(model, load_weights_file(weights), f"torchvision:{name}")
        elif not download:
            warnings.warn(
                f"torchvision:{name} has random weights (no weights file given)", stacklevel=2
            )
        children = dict(model.named_children())
        if "avgpool" in children and "fc" in children:
            keep = []
            for child_name, child in children.items():
                if child_name == "avgpool":
                    break
                keep.append(child)
            self.model: nn.Module = nn.Sequential(*keep)
        elif "features" in children:
            self.model = children["features"]
        else:
            raise ValueError(
                f"torchvision:{name}: no convolutional trunk found (supported: ResNet-like "
                f"models with avgpool/fc, or models with a `features` module)"
            )
        self._setup_input(None, None, _as_size(input_size))
        self.out_channels = self._infer_out_channels()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(x))
