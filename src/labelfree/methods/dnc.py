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
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from labelfree.data.imageset import DataError, ImageSet
from labelfree.graph.knn import l2_normalize
from labelfree.graph.nn import kmeans
from labelfree.losses.memory_bank import MemoryBank
from labelfree.losses.slices import proxy_nca, slice_loss
from labelfree.methods.base import Method
from labelfree.methods.dnc_targets import TARGETS, pseudo_targets
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE
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
    reclustering (NaN in the first round)."""

    learner: np.ndarray
    targets: np.ndarray
    split: bool
    k: int
    stability: float = float("nan")


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
        "targets": TARGETS,
        "reembed": ("cached", "pass"),
        "cluster_on": ("embedding", "features"),
        "partition": ("kmeans", "random"),
        "final": ("all", "clusters"),
        "loss": ("margin", "triplet", "proxynca"),
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
        cluster_on: str = "embedding",
        k_clique: int = 10,
        encoder: Encoder = Encoder(),
        training: Training = DNC_TRAINING,
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        learners: K, the number of clusters and embedding slices (4 for CUB/Cars, 8 for SOP in
            the thesis); ``encoder.dim`` must be divisible by it. 1 is the baseline (no split).
        targets: label-free pseudo-classes of g(x) — ``kmeans`` clusters, CliqueCNN's
            ``cliques`` or MoM's positive ``pools`` (:func:`~labelfree.methods.dnc_targets.
            pseudo_targets`; items in no clique or pool do not train) — or ``labels`` (the
            training labels: the thesis's supervised setting).
        n_pseudo: pseudo-classes for ``targets=kmeans`` (anchors for ``pools``); default
            ``N/30`` (the papers' ~30-60 images per class), between 2 and 1,000.
        partition: how the data is divided among learners: ``kmeans`` of the embedding
            (thesis) or ``random`` (the Table 2.6 ablation).
        split: each cluster trains only its own slice (thesis); False trains the full embedding
            from every cluster ("k-means without splitting" in Table 2.6).
        full_rounds: the last rounds that train the full embedding (thesis: the final
            fine-tuning; ``training.epochs`` epochs each).
        final: in those rounds, batches from ``all`` data (thesis) or still from inside each
            cluster (``clusters``: the authors' code's "force full embedding" epoch).
        loss: ``margin`` (β fixed, as in the code), ``triplet`` or ``proxynca`` (one proxy per
            class and learner, trained with the network; targets ``kmeans`` or ``labels``).
        margin: the margin of the margin and triplet losses (0.2, thesis and code).
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
            cache nothing; the first round and DDP runs make the pass anyway.
        cluster_on: what is clustered: the ``embedding`` (thesis) or the backbone's pooled
            ``features`` before the head (the authors' code); needs an image start.
        k_clique: neighbourhood of clique growth for ``targets=cliques`` (CliqueCNN's 10).
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.learners, self.targets, self.n_pseudo = learners, targets, n_pseudo
        self.partition, self.split = partition, split
        self.full_rounds, self.final = full_rounds, final
        self.loss, self.margin, self.beta, self.sampler = loss, margin, beta, sampler
        self.per_class = per_class
        self.kmeans_iters, self.kmeans_redo = kmeans_iters, kmeans_redo
        self.reembed, self.cluster_on, self.k_clique = reembed, cluster_on, k_clique
        self._targets: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._extra: nn.ModuleDict | None = None  # during fit: "bank", "proxies"
        self._n_items = 0
        self._pooled: list[torch.Tensor] = []  # what the head's input hook saw
        self._hook: Any = None

    #: The structure step asks for the current embedding only when it reclusters by a pass.
    embeds_lazily = True

    def validate_params(self) -> None:
        super().validate_params()
        if self.encoder.dim % self.learners:
            raise DataError(
                f"option learners={self.learners} must divide the embedding dim "
                f"{self.encoder.dim} (each learner owns an equal slice); set -o dim=..."
            )

        if self.loss == "proxynca" and self.targets not in ("kmeans", "labels"):
            raise DataError(
                f"option loss=proxynca needs targets=kmeans or labels (a class count known "
                f"before training), not targets={self.targets}"
            )

    def min_items(self) -> int:
        return max(2 * self.learners, 8)

    # ---- the network: slices normalised on their own; what trains beside it ------------------
    def fit(self, images: ImageSet, *args: Any, **kwargs: Any) -> DivideConquer:
        self._n_items = len(images)
        try:
            super().fit(images, *args, **kwargs)
        finally:  # the bank, the proxies and the hook exist only for training
            if self._hook is not None:
                self._hook.remove()
            self._extra, self._hook, self._pooled = None, None, []
        return self

    def prepare_net(self, net: nn.Module) -> None:
        """Raw outputs: :meth:`batch_loss` normalises each slice alone, so a cluster's batch
        gives exactly zero gradient to the head rows of the other slices. Builds the memory
        bank of ``reembed=cached`` and the proxies of ``loss=proxynca`` (trained, checkpointed
        and resumed with the network, dropped after fit), and with ``cluster_on=features``
        hooks the head to see its input."""
        net.normalize = False
        device = next(net.parameters()).device
        self._extra, width = nn.ModuleDict(), self.encoder.dim
        if self.cluster_on == "features":
            head = getattr(net, "head", None)
            if not isinstance(head, nn.Linear) or not hasattr(net, "pooled"):
                raise DataError("option cluster_on=features needs an image start (--start distill)")
            width = head.in_features
            self._hook = head.register_forward_pre_hook(lambda _m, a: self._pooled.append(a[0]))
        if self.reembed == "cached" and self.partition == "kmeans" and self.learners > 1:
            self._extra["bank"] = MemoryBank(torch.zeros(self._n_items, width, device=device))
        if self.loss == "proxynca":
            classes = self._class_count()
            with torch.random.fork_rng():  # the same seed, the same proxies
                torch.manual_seed(self.runtime.seed)
                widths = [self.encoder.dim // self.learners] * self.learners + [self.encoder.dim]
                self._extra["proxies"] = nn.ModuleList(proxy_nca(classes, w) for w in widths)
            self._extra.to(device)

    def _class_count(self) -> int:
        if self.targets == "labels":
            return int(np.max(self._labels)) + 1 if self._labels is not None else 1
        return min(self.n_pseudo or pseudo_class_count(self._n_items), self._n_items)

    def extra_module(self) -> nn.Module | None:
        return self._extra if self._extra else None

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
    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> DnCStructure:
        """Round ``round_idx``'s partition of the data among learners (module docstring)."""
        if round_idx == 0 or self._targets is None:
            self._targets = pseudo_targets(
                self.targets, reps, self._labels, self.n_pseudo, self.k_clique, self.runtime.seed
            )
            self._previous = None
        n, k = len(reps), self.learners
        final = round_idx >= self.training.rounds - self.full_rounds
        if k == 1 or (final and self.final == "all"):
            return DnCStructure(
                learner=np.zeros(n, np.int64),
                targets=self._targets,
                split=False,
                k=1,
            )
        if self.partition == "random":
            rng = np.random.default_rng([self.runtime.seed, round_idx])
            new = random_partition(n, k, rng)
        else:
            emb = l2_normalize(self._current_embedding(reps, round_idx, ctx))
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
        )

    def _current_embedding(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None
    ) -> np.ndarray:
        """What a reclustering clusters (embeddings or pooled features, ``cluster_on``): the
        bank of training-time values (``reembed=cached``, after round 0's pass) or a pass."""
        bank = self._extra["bank"] if self._extra and "bank" in self._extra else None
        if bank is not None and round_idx > 0 and dist.world_size() == 1:
            return bank.keys.float().cpu().numpy()
        if ctx is None:
            return reps
        self._pooled.clear()
        emb = ctx.embedding()
        if self.cluster_on == "features":
            if not self._pooled:
                raise RuntimeError("dnc: the pass over the data ran before the head was hooked")
            emb = torch.cat(self._pooled).float().cpu().numpy()
        self._pooled.clear()
        if bank is not None:
            idx = torch.arange(len(emb), device=bank.keys.device)
            bank.update(idx, torch.from_numpy(emb).to(bank.keys.device))
        return emb

    def restore_structure(self, structure: DnCStructure) -> None:
        """Resume inside a round: the pseudo-classes and the learners' data come back."""
        self._targets, self._previous = structure.targets, structure.learner

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
        extra = self._extra or {}
        if "bank" in extra:  # reembed=cached: the newest value of these items
            seen = self._pooled.pop() if self.cluster_on == "features" else emb
            extra["bank"].update(torch.as_tensor(batch["indices"], device=emb.device), seen)
        self._pooled.clear()
        z = F.normalize(emb[:, self.slice_of(batch["learner"], structure.split)], dim=1)
        labels = torch.as_tensor(structure.targets[batch["indices"]], device=emb.device)
        proxies = None
        if "proxies" in extra:
            proxies = extra["proxies"][batch["learner"] if structure.split else self.learners]
        return slice_loss(z, labels, self.loss, self.margin, self.beta, self.sampler, proxies)

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
