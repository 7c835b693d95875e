"""Divide & Conquer (seed 001 Ch.2, Sanakoyeu et al. CVPR 2019; METHODS.md §5).

K learners share the backbone; learner k owns the slice ``[k·d/K, (k+1)·d/K)`` of the
d-dim embedding, each slice L2-normalised on its own. Each round (``epochs`` = T = 2 epochs):
embed the training set, k-means it into K clusters, match the new clusters to the old ones by
the Hungarian algorithm on membership overlap (:func:`~labelfree.structure.partition.
match_clusters`), then every mini-batch is drawn from one cluster and trains only that cluster's
slice (and the shared backbone). The last ``full_rounds`` rounds fine-tune the full embedding.
The loss is the margin loss (Wu et al. 2017; β = 1.2, margin 0.2) on distance-weighted
negatives, from pytorch-metric-learning; triplet (margin 0.2) is the option.

Targets: ``labels`` trains on the class labels, as the thesis does (for users who have them);
``kmeans`` (default, label-free) on pseudo-classes: k-means of g(x) into ``n_pseudo`` clusters,
computed once from the initial features — the measured most reliable representation here;
``cliques`` on CliqueCNN's compact cliques of g(x) (another structure step's groups).

Choices where the authors' code (``CompVis/metric-learning-divide-and-conquer``) and the thesis
differ: we cluster the embedding, as the thesis says (the code clusters the backbone's pooled
features), and by default the embeddings each item got in its last training batch rather than a
fresh pass (``reembed``; speed, see the option); the final phase trains the full embedding on all data (``final="all"``, thesis) or
still draws batches inside clusters (``final="clusters"``, the code's "force full embedding"
epoch); negatives are distance-weighted (``sampler="distance"``, what the authors say the
published CUB figure needs) or all triplets of the batch (``sampler="all"``); the margin loss's
β is fixed, as in the code. The ablation of Table 2.6 is ``learners=1`` (baseline),
``partition=random``, ``split=false`` (k-means without splitting) and the defaults (full).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from labelfree.data.imageset import DataError, ImageSet
from labelfree.graph.knn import l2_normalize
from labelfree.graph.nn import kmeans
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE
from labelfree.structure.cliques import build_cliques
from labelfree.structure.partition import (
    class_batches,
    match_clusters,
    pseudo_class_count,
    random_partition,
)
from labelfree.train import distributed as dist
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure

#: Five rounds of T = 2 epochs, the last one the full-embedding fine-tuning (10 epochs, as the
#: other methods' default length before their own measurements).
DNC_TRAINING = Training(epochs=2, rounds=5)


@dataclass
class DnCStructure(Structure):
    """One round of D&C: ``learner`` (N,) the learner (slice) each item trains; ``targets``
    (N,) its class or pseudo-class; ``split`` whether learners train their own slice (False:
    the full embedding); ``stability`` the share of items that kept their learner since the last
    reclustering (NaN in the first round); ``cache`` (N, dim) each item's newest training-time
    embedding (``reembed=cached``; updated in place by the batches, saved with the checkpoint so
    a resumed run reclusters on the same values)."""

    learner: np.ndarray
    targets: np.ndarray
    split: bool
    k: int
    stability: float = float("nan")
    cache: np.ndarray | None = None


@register_method
class DivideConquer(Method):
    """Divide & Conquer: K learners on embedding slices, each trained on one cluster of the data
    (seed 001 Ch.2, Alg. 1 and Eq. 2.1; METHODS.md §5)."""

    name = "dnc"
    option_ranges = {
        "learners": AT_LEAST_1,
        "n_pseudo": AT_LEAST_1,
        "full_rounds": NON_NEGATIVE,
        "margin": POSITIVE,
        "beta": POSITIVE,
        "per_class": AT_LEAST_1,
        "kmeans_iters": AT_LEAST_1,
        "kmeans_redo": AT_LEAST_1,
        "k_clique": AT_LEAST_1,
    }
    option_choices = {
        "targets": ("kmeans", "cliques", "labels"),
        "reembed": ("cached", "pass"),
        "partition": ("kmeans", "random"),
        "final": ("all", "clusters"),
        "loss": ("margin", "triplet"),
        "sampler": ("distance", "all"),
    }

    def __init__(
        self,
        *,
        learners: int = 4,
        targets: str = "kmeans",
        n_pseudo: int | None = None,
        partition: str = "kmeans",
        split: bool = True,
        full_rounds: int = 1,
        final: str = "all",
        loss: str = "margin",
        margin: float = 0.2,
        beta: float = 1.2,
        sampler: str = "distance",
        per_class: int = 4,
        kmeans_iters: int = 100,
        kmeans_redo: int = 5,
        reembed: str = "cached",
        k_clique: int = 10,
        encoder: Encoder = Encoder(),
        training: Training = DNC_TRAINING,
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        learners: K, the number of clusters and embedding slices (4 for CUB/Cars, 8 for SOP in
            the thesis); ``encoder.dim`` must be divisible by it. 1 is the baseline (no split).
        targets: ``kmeans`` (pseudo-classes: k-means of g(x), label-free), ``cliques`` (the
            compact cliques of CliqueCNN's structure step on g(x), label-free; items in no clique
            do not train) or ``labels`` (the training labels: the thesis's supervised setting).
        n_pseudo: pseudo-classes for ``targets=kmeans``; default ``N/30`` (the papers' ~30-60
            images per class), between 2 and 1,000.
        partition: how the data is divided among learners: ``kmeans`` of the embedding
            (thesis) or ``random`` (the Table 2.6 ablation).
        split: each cluster trains only its own slice (thesis); False trains the full embedding
            from every cluster ("k-means without splitting" in Table 2.6).
        full_rounds: the last rounds that train the full embedding (thesis: the final
            fine-tuning; ``training.epochs`` epochs each).
        final: in those rounds, batches from ``all`` data (thesis) or still from inside each
            cluster (``clusters``: the authors' code's "force full embedding" epoch).
        loss: ``margin`` (β fixed, as in the code) or ``triplet``.
        margin: the margin of either loss (0.2, thesis and code).
        beta: the margin loss's boundary β between positive and negative distances (1.2).
        sampler: ``distance``-weighted negatives (pytorch-metric-learning's
            DistanceWeightedMiner, cut-off 0.5, non-zero-loss cut-off 1.4) or ``all`` triplets.
        per_class: items of each (pseudo-)class in a batch.
        kmeans_iters: iterations of the reclustering's faiss k-means (100 in the code).
        kmeans_redo: its restarts, the best kept (5 in the code).
        reembed: what a reclustering clusters: ``pass``, a fresh pass of the network over all
            training items (thesis and code), or ``cached`` (default), each item's embedding
            from its last training batch, kept as training goes (items not drawn since keep an
            older one). Our choice, for speed: the pass costs about a third of a D&C epoch
            (forward only over every item, against forward and backward over every item), the
            cache nothing; the first round, a resumed run and DDP runs make the pass anyway.
        k_clique: neighbourhood of clique growth for ``targets=cliques`` (CliqueCNN's 10).
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.learners, self.targets, self.n_pseudo = learners, targets, n_pseudo
        self.partition, self.split = partition, split
        self.full_rounds, self.final = full_rounds, final
        self.loss, self.margin, self.beta, self.sampler = loss, margin, beta, sampler
        self.per_class = per_class
        self.kmeans_iters, self.kmeans_redo = kmeans_iters, kmeans_redo
        self.reembed, self.k_clique = reembed, k_clique
        self._targets: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._cache: np.ndarray | None = None  # (N, dim) raw training-time embeddings

    #: The structure step asks for the current embedding only when it reclusters by a pass.
    embeds_lazily = True

    def validate_params(self) -> None:
        super().validate_params()
        if self.encoder.dim % self.learners:
            raise DataError(
                f"option learners={self.learners} must divide the embedding dim "
                f"{self.encoder.dim} (each learner owns an equal slice); set -o dim=..."
            )

    def min_items(self) -> int:
        return max(2 * self.learners, 8)

    # ---- the network: slices normalised on their own ------------------------------------------
    def prepare_net(self, net: nn.Module) -> None:
        """Raw outputs: :meth:`batch_loss` normalises each slice alone, so a cluster's batch
        gives exactly zero gradient to the head rows of the other slices."""
        net.normalize = False

    def embed(self, images: ImageSet, batch_size: int | None = None) -> np.ndarray:
        """The full embedding, L2-normalised (what the final rounds train)."""
        return l2_normalize(super().embed(images, batch_size)).astype(np.float32)

    def slice_of(self, learner: int, split: bool = True) -> slice:
        """Learner ``learner``'s columns of the embedding (all columns when not ``split``)."""
        if not split:
            return slice(None)
        width = self.encoder.dim // self.learners
        return slice(learner * width, (learner + 1) * width)

    # ---- structure ---------------------------------------------------------------------------------
    def pseudo_targets(self, g: np.ndarray) -> np.ndarray:
        """The classes batches are built from: the labels, k-means of g(x), or its cliques
        (−1: in no clique, never drawn)."""
        if self.targets == "labels":
            if self._labels is None:
                raise DataError("option targets=labels needs labelled training data")
            return np.asarray(self._labels, np.int64)
        n = len(g)
        if self.targets == "cliques":
            x = l2_normalize(g)
            cliques = build_cliques(x, min(self.k_clique, n - 1), "dot", min_size=2)
            if len(cliques) < 2:
                raise DataError(
                    f"option targets=cliques: only {len(cliques)} clique(s) of >= 2 items; "
                    "raise -o k_clique or use targets=kmeans"
                )
            return cliques.labels(x, "dot")
        k = self.n_pseudo or pseudo_class_count(n)
        km = kmeans(l2_normalize(g), min(k, n), niter=25, seed=self.runtime.seed)
        return km.assign

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> DnCStructure:
        """Round ``round_idx``'s partition of the data among learners (module docstring)."""
        if round_idx == 0 or self._targets is None:
            self._targets, self._previous, self._cache = self.pseudo_targets(reps), None, None
        n, k = len(reps), self.learners
        final = round_idx >= self.training.rounds - self.full_rounds
        if k == 1 or (final and self.final == "all"):
            return DnCStructure(
                learner=np.zeros(n, np.int64),
                targets=self._targets,
                split=False,
                k=1,
                cache=self._cache,
            )
        if self.partition == "random":
            rng = np.random.default_rng([self.runtime.seed, round_idx])
            new = random_partition(n, k, rng)
        else:
            emb = l2_normalize(self._current_embedding(reps, ctx))
            new = kmeans(
                emb,
                k,
                niter=self.kmeans_iters,
                nredo=self.kmeans_redo,
                seed=self.runtime.seed + round_idx,
            ).assign
        learner = match_clusters(self._previous, new, k)
        stability = (
            float(np.mean(learner == self._previous)) if self._previous is not None else np.nan
        )
        self._previous = learner
        return DnCStructure(
            learner=learner,
            targets=self._targets,
            split=self.split and not final,
            k=k,
            stability=stability,
            cache=self._cache,
        )

    def _current_embedding(self, reps: np.ndarray, ctx: EpochContext | None) -> np.ndarray:
        """What a reclustering clusters: the kept training-time embeddings (``reembed=cached``,
        after the first pass) or a pass over the data."""
        cached = self.reembed == "cached" and dist.world_size() == 1
        if cached and self._cache is not None:
            return self._cache
        if ctx is None:
            return reps
        emb = ctx.embedding()
        if cached:
            self._cache = np.array(emb, np.float32)
        return emb

    def restore_structure(self, structure: DnCStructure) -> None:
        """Resume inside a round: the pseudo-classes and the learners' data come back."""
        self._targets, self._previous = structure.targets, structure.learner
        self._cache = structure.cache

    def batches(
        self, structure: DnCStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        """Every batch from one cluster, class-balanced; clusters' batches interleaved."""
        out = []
        for c in range(structure.k):
            members = np.flatnonzero((structure.learner == c) & (structure.targets >= 0))
            for idx in class_batches(
                members, structure.targets, self.training.batch_size, self.per_class, rng
            ):
                out.append({"indices": idx, "learner": c})
        return [out[i] for i in rng.permutation(len(out))]

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: DnCStructure
    ) -> torch.Tensor:
        """Margin (or triplet) loss on the batch's learner's slice, normalised alone (Eq. 2.1)."""
        if structure.cache is not None:  # reembed=cached: the newest embedding of these items
            structure.cache[batch["indices"]] = emb.detach().float().cpu().numpy()
        z = F.normalize(emb[:, self.slice_of(batch["learner"], structure.split)], dim=1)
        labels = torch.as_tensor(structure.targets[batch["indices"]], device=emb.device)
        return slice_loss(z, labels, self.loss, self.margin, self.beta, self.sampler)

    def structure_stats(self, structure: DnCStructure, labels: np.ndarray) -> dict[str, float]:
        """Pseudo-class purity and NMI against the labels; the learners' stability."""
        keep = structure.targets >= 0  # cliques: items in none are not trained on
        t, labels = structure.targets[keep], labels[keep]
        majority = sum(np.bincount(labels[t == c]).max() for c in np.unique(t))
        return {
            "pseudo_purity": float(majority / max(len(t), 1)),
            "pseudo_nmi": float(normalized_mutual_info_score(labels, t)),
            "pseudo_coverage": float(keep.mean()),
            "learner_stability": structure.stability,
        }


def slice_loss(
    z: torch.Tensor, labels: torch.Tensor, loss: str, margin: float, beta: float, sampler: str
) -> torch.Tensor:
    """Margin loss (β fixed) or triplet loss on L2-normalised ``z``, on distance-weighted
    triplets or all triplets of the batch (pytorch-metric-learning)."""
    tuples = None
    if sampler == "distance":
        tuples = pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(z, labels)
        if len(tuples[0]) == 0:
            return z.sum() * 0.0
    if loss == "margin":
        fn = pml_losses.MarginLoss(margin=margin, nu=0.0, beta=beta, learn_beta=False)
    else:
        fn = pml_losses.TripletMarginLoss(margin=margin)
    return fn(z, labels, tuples)
