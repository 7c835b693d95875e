"""``fse``: unsupervised landmarks by factorized spatial embeddings (seed 004 Ch.4; METHODS.md
§6.1) — K landmark heatmaps trained by the alignment and diversity losses on warp pairs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from labelfree.data.imageset import ImageSet
from labelfree.frames.options import FrameNetwork, PairSource
from labelfree.losses.frames import (
    alignment_loss,
    diversity_loss,
    soft_argmax,
    spatial_softmax,
)
from labelfree.methods.frames import FRAME_RUNTIME, FRAME_TRAINING, FrameMethod, cells_to_pixels
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, NON_NEGATIVE
from labelfree.train.config import Runtime, Training


@register_method
class FSE(FrameMethod):
    """Unsupervised landmarks by factorized spatial embeddings (seed 004 Ch.4 eqs. 6, 8'', 9)."""

    name = "fse"
    option_ranges = {"k": AT_LEAST_1, "gamma": NON_NEGATIVE, "pool": AT_LEAST_1}

    def __init__(
        self,
        *,
        k: int = 10,
        gamma: float = 500.0,
        pool: int = 4,
        network: FrameNetwork = FrameNetwork(arch="landmark"),
        source: PairSource = PairSource(),
        training: Training = FRAME_TRAINING,
        runtime: Runtime = FRAME_RUNTIME,
    ) -> None:
        """Args:
        k: number of landmarks K (heatmaps).
        gamma: weight γ of the diversity loss (500, Ch.4 §4.1).
        pool: m of the m×m sum pooling in the diversity loss (not given in the thesis; 4 map
            cells = 8 input pixels, so K = 30 landmarks fit on a 32×32 map).
        """
        super().__init__(network=network, source=source, training=training, runtime=runtime)
        self.k, self.gamma, self.pool = k, gamma, pool

    def out_channels(self) -> int:
        return self.k

    def pair_loss(
        self, phi: torch.Tensor, phi2: torch.Tensor, pair: dict[str, Any]
    ) -> torch.Tensor:
        p, p2 = spatial_softmax(phi), spatial_softmax(phi2)
        scale = phi.shape[-1] / 2  # distances in the image's normalised [−1, 1] units
        align = alignment_loss(p, p2, pair["G"], scale=scale)
        div = diversity_loss(p, self.pool) + diversity_loss(p2, self.pool)
        return align + self.gamma * div

    def points(self, images: ImageSet) -> np.ndarray:
        """The K soft-argmax landmarks u*_r, in pixel coordinates."""
        return cells_to_pixels(soft_argmax(spatial_softmax(self.maps(images)))).numpy()
