"""Mining on Manifolds (Iscen, Tolias, Avrithis, Chum, CVPR 2018; seed 002; METHODS.md §1).

Hard positives are manifold neighbours that are not Euclidean neighbours (P⁺ = NN^m \\ NN^e),
hard negatives are Euclidean neighbours that are not manifold neighbours (P⁻ = NN^e \\ NN^m), both
found on the mutual kNN graph of the initial features. The options ``positives`` and
``negatives`` give the rows of the paper's Table 1 ablation:

=====================  ===========================  =============================
row                    positives                    negatives
=====================  ===========================  =============================
NN5 / random           ``euclidean`` (5 NN)          ``random`` (= Hadsell baseline)
P⁺ / random            ``manifold``                 ``random``
NN5 / P⁻               ``euclidean``                ``manifold``
P⁺ / P⁻                ``manifold``                 ``manifold``
P⁺ / P⁻ weighted       ``manifold`` + ``weighted``  ``manifold``
=====================  ===========================  =============================

The defaults are the last row, the paper's MoM; the other rows set ``weighted=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelfree.graph.manifold import (
    graph_modes,
    knn_graph,
    largest_component,
    mutual_knn_graph,
    normalize_graph,
    stationary_distribution,
)
from labelfree.losses.pairs import TUPLE_LOSSES, check_tuple_loss, tuple_loss
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, OPEN_UNIT, POSITIVE
from labelfree.structure.pools import (
    mine_pools,
    pool_rates,
    pool_size_rule,
)
from labelfree.structure.tuples import random_non_neighbours, tuple_batches
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure

#: MoM's fine-tuning defaults: 5 epochs, not the shared 10. Measured on mnist5k (distilled
#: start, held-out digits 5-9, MAP@R after each epoch, seeds 0/1/2;
#: ``bench_selection.py --methods mom --seeds 0,1,2 --epochs 10``): 0.650 / 0.634 / 0.613 after
#: epoch 5, 0.636 / 0.609 / 0.602 after epoch 10 — past about 5 epochs the network specialises to
#: the training classes (their MAP@R keeps rising to 0.95) and the unseen ones lose. 3 seeds at 5
#: epochs (``bench_quality.py --rows defaults``): 0.632 ± 0.015. The paper's CUB schedule stays
#: in recipes/mom-cub.toml.
MOM_TRAINING = Training(epochs=5)


@dataclass
class MoMStructure(Structure):
    """MoM's pools (seed 002 §3.3) of the kept ``anchors`` (rows): ``pos`` / ``neg`` (A, width)
    members, first ``pos_len`` / ``neg_len`` valid; ``pos_w`` the normalised manifold similarity
    of each positive (weighted MoM). ``neg`` / ``neg_len`` are None with random negatives,
    ``pos_w`` when unweighted. ``n``: training items; ``k_pos`` / ``k_neg``: the pool sizes."""

    n: int
    k_pos: int
    k_neg: int
    anchors: np.ndarray
    pos: np.ndarray
    pos_len: np.ndarray
    neg: np.ndarray | None = None
    neg_len: np.ndarray | None = None
    pos_w: np.ndarray | None = None


@register_method
class MoM(Method):
    """Mining on Manifolds: metric learning from manifold / Euclidean disagreement (seed 002 §3)."""

    name = "mom"
    option_ranges = {
        "k_graph": AT_LEAST_1,
        "alpha": OPEN_UNIT,
        "cg_iters": AT_LEAST_1,
        "k_pos": AT_LEAST_1,
        "k_neg": AT_LEAST_1,
        "pool_max": AT_LEAST_1,
        "nn_pos": AT_LEAST_1,
        "hard_negatives": AT_LEAST_1,
        "n_anchors": AT_LEAST_1,
        "margin": POSITIVE,
    }
    option_choices = {
        "positives": ("manifold", "euclidean"),
        "negatives": ("manifold", "random"),
        "anchors": ("all", "modes"),
        "loss": tuple(TUPLE_LOSSES),
    }

    def __init__(
        self,
        *,
        k_graph: int = 30,
        alpha: float = 0.99,
        cg_iters: int = 20,
        k_pos: int | None = None,
        k_neg: int | None = None,
        pool_max: int = 50,
        positives: str = "manifold",
        negatives: str = "manifold",
        nn_pos: int = 5,
        weighted: bool | None = None,
        hard_negatives: int = 10,
        anchors: str = "all",
        n_anchors: int | None = None,
        degree_normalized: bool = False,
        loss: str = "triplet",
        margin: float | None = None,
        encoder: Encoder = Encoder(),
        training: Training = MOM_TRAINING,
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        k_graph: k of the mutual kNN graph (30, seed 002 §4.3).
        alpha: diffusion α (0.99). cg_iters: conjugate-gradient iterations (20, authors' code).
        k_pos, k_neg: k of P⁺ = NN^m_k \\ NN^e_k and P⁻ = NN^e_k \\ NN^m_k. The paper's 50 / 100
            assume ~30–60 images per class; ``None`` (default) measures the class scale on the
            graph without labels (:func:`labelfree.structure.pools.pool_size_rule`), which
            gives about 50 / 100 at 50 per class and 500 / 1000 at 500 per class.
        pool_max: pools are truncated to this many members (50).
        positives: ``manifold`` (P⁺) or ``euclidean`` (the ``nn_pos`` Euclidean neighbours).
        nn_pos: Euclidean neighbours a positive is drawn from when positives is euclidean (5).
        negatives: ``manifold`` (P⁻, hardest in the current embedding) or ``random``
            (uniform among items outside the anchor's positives).
        weighted: multiply each tuple's loss by the manifold similarity s_m(x^r, x⁺) — the
            paper's final MoM (Table 1's best row, CUB R@1 45.3). Default (None): weighted
            whenever positives are ``manifold``. Measured on mnist5k 500/class, distilled
            start, 3 seeds: weighted 0.612 ± 0.010 MAP@R vs unweighted 0.584 ± 0.022
            (benchmarks/bench_mom.py); on digits 0.602 vs 0.599. The raw
            s_m are tiny ((1 − α) scale), so weights are divided by their mean over all pool
            entries: relative weighting as in the paper, without silently changing the
            learning rate (our choice; the paper does not say).
        hard_negatives: the negative is drawn among the pool members nearest the anchor in
            the current embedding (10 in the authors' code).
        anchors: ``all`` items (small sets) or ``modes``: local maxima of the stationary
            distribution of the random walk on the largest component, top ``n_anchors``.
        n_anchors: how many modes serve as anchors with ``anchors=modes`` (None: all modes).
        degree_normalized: rank manifold neighbours by f_i(j)/√d_j-style degree-normalised
            similarity instead of f (removes hub bias; see ``manifold_similarity``). Off by
            default: the paper ranks by f.
        loss: ``triplet`` (margin 0.5, the paper's fine-grained setting) or ``contrastive``
            (margin 0.7).
        margin: overrides the loss's default margin.
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        if positives not in ("manifold", "euclidean"):
            raise ValueError(f"positives {positives!r}: choose 'manifold' or 'euclidean'")
        if negatives not in ("manifold", "random"):
            raise ValueError(f"negatives {negatives!r}: choose 'manifold' or 'random'")
        if anchors not in ("all", "modes"):
            raise ValueError(f"anchors {anchors!r}: choose 'all' or 'modes'")
        check_tuple_loss(loss)
        self.k_graph, self.alpha, self.cg_iters = k_graph, alpha, cg_iters
        self.k_pos, self.k_neg, self.pool_max = k_pos, k_neg, pool_max
        self.positives, self.negatives, self.nn_pos = positives, negatives, nn_pos
        self.weighted, self.hard_negatives = weighted, hard_negatives
        # What None resolves to; explicit True with Euclidean positives stays an error.
        self._weighted = positives == "manifold" if weighted is None else weighted
        self.anchors, self.n_anchors = anchors, n_anchors
        self.degree_normalized = degree_normalized
        self.loss, self.margin = loss, margin

    def min_items(self) -> int:
        return max(self.k_graph, self.nn_pos, self.k_pos or 0, self.k_neg or 0) + 2

    # ---- structure step ---------------------------------------------------------------------
    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> MoMStructure:
        n = len(reps)
        # One kNN table serves the graph and (when wide enough) the Euclidean pools.
        width = min(max(self.k_graph, self.nn_pos, self.k_pos or 0, self.k_neg or 0), n - 1)
        table = knn_graph(reps, width)
        graph = mutual_knn_graph(None, k=self.k_graph, neighbours=table)
        k_pos, k_neg = self.k_pos, self.k_neg
        if k_pos is None or k_neg is None:
            rule_pos, rule_neg = pool_size_rule(graph, seed=self.runtime.seed)
            k_pos = k_pos if k_pos is not None else rule_pos
            k_neg = k_neg if k_neg is not None else rule_neg
        k_pos, k_neg = min(k_pos, n - 2), min(k_neg, n - 2)
        if self.anchors == "all":
            anchors = np.arange(n)
        else:
            comp = largest_component(graph)
            pi = np.zeros(n)
            pi[comp] = stationary_distribution(graph[comp][:, comp])
            anchors = graph_modes(graph, pi, self.n_anchors)
        depth = max(k_pos, k_neg, self.nn_pos)
        e_idx = table[1] if depth <= width else knn_graph(reps, depth)[1]
        e_idx = e_idx[anchors, :depth]
        if self.positives == "manifold" or self.negatives == "manifold":
            # the pools of seed 002 §3.3, as structure.pools.mine_pools builds (and
            # bench_mining times) them, on the kNN table the graph was built from
            pos, neg = mine_pools(
                reps,
                normalize_graph(graph),
                anchors,
                k_pos=k_pos,
                k_neg=k_neg,
                max_size=self.pool_max,
                alpha=self.alpha,
                maxiter=self.cg_iters,
                degrees=np.asarray(graph.sum(axis=1)).ravel() if self.degree_normalized else None,
                euclid=(None, e_idx),
            )
        if self.positives == "manifold":
            members, lengths, w = pos.members, pos.lengths, pos.sims
        else:
            members = e_idx[:, : self.nn_pos]
            lengths = np.full(len(anchors), self.nn_pos, dtype=np.int64)
            w = None
        keep = lengths > 0
        if self.negatives == "manifold":
            keep &= neg.lengths > 0
        out = MoMStructure(n, k_pos, k_neg, anchors[keep], members[keep], lengths[keep])
        if self.negatives == "manifold":
            out.neg, out.neg_len = neg.members[keep], neg.lengths[keep]
        if self._weighted:
            if w is None:
                raise ValueError("weighted needs manifold positives (positives='manifold')")
            w = w[keep]
            valid = np.arange(w.shape[1])[None, :] < out.pos_len[:, None]
            out.pos_w = w / max(float(w[valid].mean()), 1e-12)
        if not keep.any():
            raise ValueError(
                f"mom: every anchor has an empty pool (k_pos={k_pos}, k_neg={k_neg}); "
                "raise -o k_pos / -o k_neg or use more images"
            )
        return out

    # ---- batches of an epoch ------------------------------------------------------------------
    def batches(
        self, structure: MoMStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        anchors = structure.anchors
        order = rng.permutation(len(anchors))
        a = anchors[order]
        plen = structure.pos_len[order]
        j = (rng.random(len(a)) * plen).astype(np.int64)
        p = structure.pos[order, j]
        w = structure.pos_w[order, j] if self._weighted else None
        if self.negatives == "random":
            excluded = np.full((structure.n, structure.pos.shape[1]), -1, dtype=np.int64)
            excluded[anchors] = structure.pos
            neg = random_non_neighbours(a, excluded, structure.n, rng)
        else:
            if ctx is None:
                raise RuntimeError(
                    "mom: hard negatives need the current embedding (an EpochContext)"
                )
            neg = self._hard_negatives(
                a, structure.neg[order], structure.neg_len[order], rng, ctx.embedding()
            )
        return tuple_batches(a, p, neg, self.training.batch_size, weights=w)

    def _hard_negatives(
        self,
        a: np.ndarray,
        pool: np.ndarray,
        lengths: np.ndarray,
        rng: np.random.Generator,
        z: np.ndarray,
    ) -> np.ndarray:
        """One negative per anchor, uniform among its ``hard_negatives`` pool members nearest
        the anchor in the *current* embedding (seed 002 §3.4)."""
        za = z[a][:, None, :]
        zp = z[np.where(pool >= 0, pool, 0)]
        d = ((za - zp) ** 2).sum(-1)
        d[np.arange(pool.shape[1])[None, :] >= lengths[:, None]] = np.inf
        nearest = np.argsort(d, axis=1)[:, : self.hard_negatives]
        n_valid = np.minimum(lengths, self.hard_negatives)
        pick = nearest[np.arange(len(a)), (rng.random(len(a)) * n_valid).astype(np.int64)]
        return pool[np.arange(len(a)), pick]

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: MoMStructure
    ) -> torch.Tensor:
        return tuple_loss(emb, batch, self.loss, self.margin)

    def structure_stats(self, structure: MoMStructure, labels: np.ndarray) -> dict[str, float]:
        """True-positive rate of P⁺ and true-negative rate of P⁻ (CUB: 40 % / 96 %)."""
        anchors = structure.anchors
        stats = {
            "anchors": float(len(anchors)),
            "k_pos": float(structure.k_pos),
            "k_neg": float(structure.k_neg),
            "positive_tp_rate": pool_rates(
                structure.pos, structure.pos_len, anchors, labels, positive=True
            ),
        }
        if structure.neg is not None:
            stats["negative_tn_rate"] = pool_rates(
                structure.neg, structure.neg_len, anchors, labels, positive=False
            )
        return stats
