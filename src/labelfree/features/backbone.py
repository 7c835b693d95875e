"""g(x) from a CNN: a backbone's feature map, globally pooled and L2-normalised.

With a pretrained backbone (``hf:<dir>``, ``timm:<name>`` + weights, ``torchvision:<name>`` +
weights, or a built-in backbone with a weights file) this is the papers' starting point: the
ImageNet network's own features are g(x) (METHODS.md §0). Without weights a built-in backbone
has random weights drawn from ``seed``: the "random CNN" baseline, not a pretrained start.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelfree.data.imageset import ImageSet
from labelfree.features.base import FeatureExtractor, register
from labelfree.nets.adapters import load_matching_state, load_weights_file
from labelfree.nets.backbones import ADAPTER_PREFIXES, build_backbone, is_pretrained
from labelfree.nets.pooling import make_pooling
from labelfree.utils import choose_device


@register
class BackboneExtractor(FeatureExtractor):
    """Pooled, L2-normalised backbone features: images → ``(N, C)`` float32.

    Args:
        backbone: a :func:`~labelfree.nets.backbones.build_backbone` name (``"small"``,
            ``"resnet18"``, ``"hf:<dir>"``, ``"timm:<name>"``, ``"torchvision:<name>"``).
        pooling: ``"avg"``, ``"mac"``, ``"gem"`` or ``"rmac"``.
        weights: a state-dict file for built-in, timm and torchvision backbones (``fc.*`` and
            other entries the backbone lacks are dropped; the ``backbone.*`` part of a saved
            :class:`~labelfree.nets.heads.EmbeddingNet` loads too). ``hf:`` backbones take their
            weights from the folder in the name.
        seed: seeds the random initialisation when there are no weights.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ... (``None``: CUDA when available).
        **backbone_kw: extra backbone arguments (``width``, ``small_input``, ``input_size``).

    The network runs in eval mode (BatchNorm uses its running statistics) under
    ``torch.no_grad``. The cache key covers the settings (not ``batch_size`` / ``device``) and
    the content of the weights file, so replacing the file at the same path invalidates cached
    features.
    """

    name: ClassVar[str] = "backbone"

    def __init__(
        self,
        backbone: str = "small",
        pooling: str = "avg",
        weights: str | None = None,
        seed: int = 0,
        batch_size: int = 256,
        device: str | None = None,
        **backbone_kw: Any,
    ) -> None:
        make_pooling(pooling)  # fail early on an unknown name
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.backbone = backbone
        self.pooling = pooling
        self.weights = None if weights is None else str(weights)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.device = device
        self.backbone_kw = dict(backbone_kw)
        self._net: nn.Module | None = None
        self._weights_digest: str | None = None

    def config(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone,
            "pooling": self.pooling,
            "weights": self.weights,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "device": self.device,
            **self.backbone_kw,
        }

    def key(self) -> str:
        """Hash of the settings that change the features, plus a digest of the weights.

        ``batch_size`` and ``device`` are left out (eval-mode features do not depend on them);
        the weights count by content (a file's bytes, an hf: folder's file listing).
        """
        settings = {k: v for k, v in self.config().items() if k not in ("batch_size", "device")}
        h = hashlib.blake2b(digest_size=12)
        h.update(json.dumps({"name": self.name, **settings}, sort_keys=True).encode())
        h.update(self._digest_weights().encode())
        return h.hexdigest()

    def _digest_weights(self) -> str:
        if self._weights_digest is None:
            target = self.weights
            if target is None and self.backbone.startswith("hf:"):
                target = self.backbone[3:]
            self._weights_digest = _path_digest(target) if target else ""
        return self._weights_digest

    def network(self) -> nn.Module:
        """The backbone followed by the pooling, built (once) on the chosen device, eval mode."""
        if self._net is None:
            is_adapter = self.backbone.startswith(ADAPTER_PREFIXES)
            kw = dict(self.backbone_kw)
            if is_adapter and self.weights is not None:
                kw["weights"] = self.weights
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                body = build_backbone(self.backbone, **kw)
            if not is_adapter:
                if self.weights is not None:
                    load_matching_state(body, load_weights_file(self.weights), self.backbone)
                elif not is_pretrained(self.backbone):
                    warnings.warn(
                        f"backbone {self.backbone!r} has random weights (seed {self.seed}): "
                        "its features are a baseline, not a pretrained start; pass weights=",
                        stacklevel=2,
                    )
            self._net = nn.Sequential(body, make_pooling(self.pooling))
            self._net.to(choose_device(self.device)).eval()
        return self._net

    def _transform(self, images: ImageSet) -> np.ndarray:
        net = self.network()
        device = next(iter(net.parameters())).device
        out = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                x = images.tensor(slice(start, start + self.batch_size)).to(device)
                out.append(F.normalize(net(x).float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, _out_channels(net)), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32, copy=False)


def _out_channels(net: nn.Module) -> int:
    return int(net[0].out_channels)


def _path_digest(path: str) -> str:
    """Content hash of a file; for a folder, the names, sizes and mtimes of its files."""
    p = Path(path)
    h = hashlib.blake2b(digest_size=12)
    if p.is_file():
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    elif p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:  # a hub id (or a path that does not exist yet): the name alone
        h.update(os.fsencode(path))
    return h.hexdigest()
