"""The Hadsell-style baseline of Mining on Manifolds' Table 1 (seed 002, §5.1; METHODS.md §1.9).

Positives are the ``k_pos`` = 5 Euclidean nearest neighbours of the anchor in the current
representation (g(x) in round 0), negatives are random non-neighbours; the network is trained
with the contrastive or triplet loss. It is the baseline row of every later method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelfree.graph.knn import knn
from labelfree.losses.pairs import TUPLE_LOSSES, check_tuple_loss, tuple_loss
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, POSITIVE
from labelfree.structure.tuples import random_non_neighbours, tuple_batches
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure


@dataclass
class HadsellStructure(Structure):
    """Hadsell's structure (seed 002 §5.1): ``positives`` (N, k_pos), each item's Euclidean
    nearest neighbours in the current representation."""

    positives: np.ndarray


@register_method
class Hadsell(Method):
    """kNN positives, random negatives (Hadsell, Chopra, LeCun 2006 as used in seed 002 Table 1)."""

    name = "hadsell"
    option_ranges = {"k_pos": AT_LEAST_1, "margin": POSITIVE}
    option_choices = {"loss": tuple(TUPLE_LOSSES)}

    def __init__(
        self,
        *,
        k_pos: int = 5,
        loss: str = "triplet",
        margin: float | None = None,
        encoder: Encoder = Encoder(),
        training: Training = Training(),
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        k_pos: positives are drawn from the anchor's ``k_pos`` Euclidean nearest neighbours.
        loss: ``triplet`` (margin 0.5, squared distances) or ``contrastive`` (margin 0.7);
            margins from seed 002 §4.3.
        margin: overrides the loss's default margin.
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        check_tuple_loss(loss)
        self.k_pos = k_pos
        self.loss = loss
        self.margin = margin

    def min_items(self) -> int:
        return self.k_pos + 2

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> HadsellStructure:
        _, nn_idx = knn(reps, self.k_pos)
        return HadsellStructure(positives=nn_idx)

    def batches(
        self, structure: HadsellStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        pos_table = structure.positives
        n = len(pos_table)
        anchors = rng.permutation(n)
        positives = pos_table[anchors, rng.integers(0, pos_table.shape[1], size=n)]
        negatives = random_non_neighbours(anchors, pos_table, n, rng)
        return tuple_batches(anchors, positives, negatives, self.training.batch_size)

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: HadsellStructure
    ) -> torch.Tensor:
        return tuple_loss(emb, batch, self.loss, self.margin)

    def structure_stats(self, structure: HadsellStructure, labels: np.ndarray) -> dict[str, float]:
        """True-positive rate of the kNN positives and the expected true-negative rate of the
        random non-neighbour negatives (the quickest check of mining quality, seed 002 §5)."""
        pos = structure.positives
        n, k = pos.shape
        same_nn = (labels[pos] == labels[:, None]).sum(axis=1)
        same_other = np.bincount(labels)[labels] - 1 - same_nn
        return {
            "positive_tp_rate": float(same_nn.mean() / k),
            "negative_tn_rate": float(1.0 - (same_other / (n - 1 - k)).mean()),
        }
