"""DeepCluster (Caron, Bojanowski, Joulin, Douze, ECCV 2018; METHODS.md §8): k-means pseudo-labels
and classification, alternated. Each round (one epoch by default, ``rounds`` of them): embed every
training image with the current network, PCA-whiten and L2-normalise the embeddings, k-means them
(faiss, a new seed each round), re-initialise the classifier head, and train network + head with
the cross-entropy on the cluster ids, sampling images uniformly over clusters (so a large cluster
cannot dominate, the paper's guard against the trivial solution).

Choices: the head reads the L2-normalised embedding (our networks end there) through a linear
layer; K defaults to the pseudo-class rule shared with Divide & Conquer (N/30: the papers' ~30-60
images per class, over-clustering as DeepCluster does: 10,000 clusters for ImageNet's 1,000
classes); PCA keeps every dimension of the (64-d) embedding instead of reducing 4,096 to 256;
the head's AdamW moments are kept across re-initialisations (the shared loop builds one optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score

from labelfree.data.imageset import ImageSet
from labelfree.graph.knn import l2_normalize
from labelfree.graph.nn import kmeans
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.methods.transient_head import TransientHead
from labelfree.options import AT_LEAST_1
from labelfree.structure.partition import cluster_uniform_probabilities, pseudo_class_count
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure

#: Ten reclusterings of one epoch each.
DEEPCLUSTER_TRAINING = Training(epochs=1, rounds=10)


@dataclass
class ClusterStructure(Structure):
    """``assign`` (N,) the round's cluster of each image; ``nmi_previous`` the NMI with the
    previous round's clusters (the paper's stability curve; NaN in the first round)."""

    assign: np.ndarray
    nmi_previous: float = float("nan")


@register_method
class DeepCluster(TransientHead, Method):
    """k-means pseudo-labels on whitened embeddings + a re-initialised classifier each round."""

    name = "deepcluster"
    option_ranges = {"clusters": AT_LEAST_1, "kmeans_iters": AT_LEAST_1}

    def __init__(
        self,
        *,
        clusters: int | None = None,
        kmeans_iters: int = 20,
        encoder: Encoder = Encoder(),
        training: Training = DEEPCLUSTER_TRAINING,
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        clusters: K of the k-means; default N/30 (between 2 and 1,000), over-clustering.
        kmeans_iters: faiss k-means iterations per round (20, the paper's).
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.clusters, self.kmeans_iters = clusters, kmeans_iters
        self._previous: np.ndarray | None = None

    def n_clusters(self, n: int) -> int:
        return min(self.clusters or pseudo_class_count(n), n)

    def head_classes(self, n_items: int) -> int:
        return self.n_clusters(n_items)

    def fit(self, images: ImageSet, *args: Any, **kwargs: Any) -> DeepCluster:
        """The head (:class:`TransientHead`) is built for this collection's K and dropped after:
        it is re-initialised every round anyway."""
        self._previous = None
        return super().fit(images, *args, **kwargs)

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> ClusterStructure:
        emb = ctx.embedding() if ctx is not None else reps
        k = self.n_clusters(len(emb))
        white = PCA(whiten=True, random_state=self.runtime.seed).fit_transform(emb)
        assign = kmeans(
            l2_normalize(white.astype(np.float32)),
            k,
            niter=self.kmeans_iters,
            seed=self.runtime.seed * 1000 + round_idx,
        ).assign
        nmi = (
            float(normalized_mutual_info_score(self._previous, assign))
            if self._previous is not None
            else float("nan")
        )
        self._previous = assign
        if self._head is not None:
            self._head.reset_parameters()
        return ClusterStructure(assign=assign, nmi_previous=nmi)

    def restore_structure(self, structure: ClusterStructure) -> None:
        self._previous = structure.assign

    def batches(
        self, structure: ClusterStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        """N images per epoch, each drawn by picking a non-empty cluster uniformly, then an
        image in it uniformly."""
        n = len(structure.assign)
        picks = rng.choice(n, size=n, p=cluster_uniform_probabilities(structure.assign))
        b = self.training.batch_size
        return [{"indices": picks[s : s + b]} for s in range(0, len(picks), b)]

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: ClusterStructure
    ) -> torch.Tensor:
        target = torch.as_tensor(structure.assign[batch["indices"]], device=emb.device)
        return F.cross_entropy(self._head(emb), target)

    def structure_stats(self, structure: ClusterStructure, labels: np.ndarray) -> dict[str, float]:
        return {
            "cluster_nmi": float(normalized_mutual_info_score(labels, structure.assign)),
            "nmi_previous": structure.nmi_previous,
        }
