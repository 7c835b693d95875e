"""Exemplar-CNN (Dosovitskiy, Springenberg, Riedmiller, Brox, NIPS 2014 / TPAMI 2016; METHODS.md
§8): surrogate classes, each one seed image under strong random transformations, and a softmax
classifier over them. With instance discrimination, the "no structure at all" baseline.

Choices: our images are already small (28-64 px), so a seed "patch" is the whole image rather
than a 32×32 patch cut at a high-gradient location of a 96×96 image; the seeds are the images
with the most gradient energy (the paper's criterion for where to cut, applied to choose among
images), at most ``surrogates`` of them; the transformations are the encoder's augmentation, at
the strength every method uses (1.0), so that Exemplar-CNN starts from the same distilled network
as the rows it is compared with (the distillation is trained with that augmentation too);
``-o augment=1.5`` gives heavier transformations, as the paper's are (rotation ±15°, crops of
25-100 % of the area, colour jitter ±0.6), at the price of its own distillation. The classifier
reads the L2-normalised embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from labelfree.data.imageset import ImageSet
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.methods.transient_head import TransientHead
from labelfree.options import AT_LEAST_1
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure


@dataclass
class SurrogateStructure(Structure):
    """``seeds`` (K,): the training image of each surrogate class."""

    seeds: np.ndarray


def gradient_energy(images: np.ndarray) -> np.ndarray:
    """Mean squared finite-difference gradient of each ``(N, H, W, 3)`` uint8 image's luma."""
    grey = images.astype(np.float32).mean(axis=3)
    gy, gx = np.diff(grey, axis=1), np.diff(grey, axis=2)
    return (gy**2).mean(axis=(1, 2)) + (gx**2).mean(axis=(1, 2))


@register_method
class ExemplarCNN(TransientHead, Method):
    """Softmax over surrogate classes of heavily transformed seed images (Dosovitskiy et al.)."""

    name = "exemplar-cnn"
    option_ranges = {"surrogates": AT_LEAST_1, "views": AT_LEAST_1}

    def __init__(
        self,
        *,
        surrogates: int = 2000,
        views: int = 4,
        encoder: Encoder = Encoder(),
        training: Training = Training(),
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        surrogates: the most surrogate classes (seed images); fewer when the collection is
            smaller (the paper's classification accuracy saturates at a few thousand).
        views: transformed samples of every surrogate class per epoch.
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.surrogates, self.views = surrogates, views
        self._seeds: np.ndarray | None = None

    def head_classes(self, n_items: int) -> int:
        return min(self.surrogates, n_items)

    def fit(self, images: ImageSet, *args: Any, **kwargs: Any) -> ExemplarCNN:
        k = self.head_classes(len(images))
        if images.streaming:  # gradient energy needs every image: pick seeds at random instead
            rng = np.random.default_rng(self.runtime.seed)
            self._seeds = np.sort(rng.permutation(len(images))[:k])
        else:
            self._seeds = np.sort(np.argsort(-gradient_energy(images.images), kind="stable")[:k])
        return super().fit(images, *args, **kwargs)

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> SurrogateStructure:
        seeds = self._seeds if self._seeds is not None else np.arange(len(reps))
        return SurrogateStructure(seeds=seeds)

    def batches(
        self,
        structure: SurrogateStructure,
        rng: np.random.Generator,
        ctx: EpochContext | None = None,
    ) -> list[dict[str, Any]]:
        """``views`` samples of each surrogate class, shuffled; each is augmented afresh."""
        classes = rng.permutation(np.repeat(np.arange(len(structure.seeds)), self.views))
        b = self.training.batch_size
        return [
            {"indices": structure.seeds[classes[s : s + b]], "classes": classes[s : s + b]}
            for s in range(0, len(classes), b)
        ]

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: SurrogateStructure
    ) -> torch.Tensor:
        target = torch.as_tensor(batch["classes"], device=emb.device)
        return F.cross_entropy(self._head(emb), target)
