"""Positive and negative pools of Mining on Manifolds (seed 002 §3.3, METHODS.md §1 steps 3–4).

P⁺(i) = NN^m_k(i) \\ NN^e_k(i) in manifold order and P⁻(i) = NN^e_k(i) \\ NN^m_k(i) in Euclidean
order, each truncated. Pools are stored as a padded ``(n_anchors, max_size)`` int64 table with
−1 padding plus a ``lengths`` vector: one random member per anchor is then a single vectorised
gather, ``members[rows, (rng.random(n) * lengths).astype(int)]`` (anchors with length 0 must
be skipped), which is faster to sample from than a list of arrays.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from labelfree.graph.knn import knn
from labelfree.graph.manifold import local_cluster_sizes, manifold_similarity


class Pool(NamedTuple):
    """A padded pool table.

    Attributes:
        members: ``(n_anchors, max_size)`` int64 item indices, −1 after ``lengths[a]``.
        lengths: ``(n_anchors,)`` int64 number of valid members per anchor.
        sims: ``(n_anchors, max_size)`` float32 similarity of each member to its anchor in the
            ordering list (manifold for P⁺, for the weighted loss; Euclidean for P⁻), 0 in
            the padding; ``None`` when no similarities were given.
    """

    members: np.ndarray
    lengths: np.ndarray
    sims: np.ndarray | None


def _as_table(a: np.ndarray, k: int, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (anchors × neighbours) table, got {a.shape}")
    if a.shape[1] < k:
        raise ValueError(f"{what} has {a.shape[1]} columns, fewer than k = {k}")
    return a[:, :k].astype(np.int64, copy=False)


def _difference(
    first: np.ndarray,
    second: np.ndarray,
    max_size: int,
    sims: np.ndarray | None,
) -> Pool:
    """Row-wise ``first \\ second`` keeping the order of ``first``; −1 entries are ignored.

    Rows are assumed to hold distinct items (as kNN tables do).

    Vectorised: rows are made disjoint by offsetting each row's values by row·(max index + 2),
    then one global sorted search tests membership for all anchors at once.
    """
    n_rows = len(first)
    if len(second) != n_rows:
        raise ValueError(f"neighbour tables differ in rows: {n_rows} vs {len(second)}")
    if max_size < 0:
        raise ValueError(f"max_size must be non-negative, got {max_size}")
    span = int(max(first.max(initial=-1), second.max(initial=-1))) + 2
    offset = np.arange(n_rows, dtype=np.int64)[:, None] * span
    hay = np.sort(second + 1 + offset, axis=1).reshape(-1)  # rows sorted and disjoint
    needle = first + 1 + offset
    pos = np.searchsorted(hay, needle.reshape(-1)).reshape(needle.shape)
    found = (
        hay[np.minimum(pos, hay.size - 1)] == needle if hay.size else np.zeros_like(needle, bool)
    )
    keep = ~found & (first >= 0)
    slot = np.cumsum(keep, axis=1) - 1
    place = keep & (slot < max_size)
    rows = np.broadcast_to(np.arange(n_rows)[:, None], first.shape)[place]
    members = np.full((n_rows, max_size), -1, dtype=np.int64)
    members[rows, slot[place]] = first[place]
    out_sims = None
    if sims is not None:
        out_sims = np.zeros((n_rows, max_size), dtype=np.float32)
        out_sims[rows, slot[place]] = sims[place]
    lengths = np.minimum(keep.sum(axis=1), max_size).astype(np.int64)
    return Pool(members, lengths, out_sims)


def positive_pool(
    manifold_nn: np.ndarray,
    euclid_nn: np.ndarray,
    k_pos: int = 50,
    max_size: int = 50,
    manifold_sims: np.ndarray | None = None,
) -> Pool:
    """Positive pool P⁺(x^r) = NN^m_k(y^r) \\ NN^e_k(y^r), seed 002 eq. (5).

    Args:
        manifold_nn: ``(A, ≥k_pos)`` manifold neighbours of each anchor by decreasing manifold
            similarity (``manifold_similarity(..., topk=...)[1]``); −1 entries are ignored.
        euclid_nn: ``(A, ≥k_pos)`` Euclidean neighbours of the same anchors, same row order.
        k_pos: k of eq. (5); 50 in seed 002 §4 (see :func:`pool_size_rule` for a data-driven
            value).
        max_size: pool truncation (50 in seed 002), keeping the highest manifold similarity.
        manifold_sims: optional ``(A, ≥k_pos)`` similarities aligned with ``manifold_nn``;
            returned for the pool members (the weights s_m(x^r, x⁺) of the weighted loss).

    Returns:
        :class:`Pool` in decreasing manifold similarity.
    """
    m = _as_table(manifold_nn, k_pos, "manifold_nn")
    e = _as_table(euclid_nn, k_pos, "euclid_nn")
    s = None if manifold_sims is None else np.asarray(manifold_sims)[:, :k_pos]
    return _difference(m, e, max_size, s)


def negative_pool(
    euclid_nn: np.ndarray,
    manifold_nn: np.ndarray,
    k_neg: int = 100,
    max_size: int = 50,
    euclid_sims: np.ndarray | None = None,
) -> Pool:
    """Negative pool P⁻(x^r) = NN^e_k(y^r) \\ NN^m_k(y^r), seed 002 eq. (6).

    Args:
        euclid_nn: ``(A, ≥k_neg)`` Euclidean neighbours of each anchor, most similar first.
        manifold_nn: ``(A, ≥k_neg)`` manifold neighbours of the same anchors. Items the
            diffusion did not reach (−1 padding) are, correctly, not manifold neighbours.
        k_neg: k of eq. (6); 100 for fine-grained sets, 10,000 for million-scale retrieval in
            seed 002 §4 (see :func:`pool_size_rule`).
        max_size: truncation (50 in seed 002), keeping the most Euclidean-similar (hardest).
        euclid_sims: optional similarities aligned with ``euclid_nn``, returned for members.

    Returns:
        :class:`Pool` in decreasing Euclidean similarity.
    """
    e = _as_table(euclid_nn, k_neg, "euclid_nn")
    m = _as_table(manifold_nn, k_neg, "manifold_nn")
    s = None if euclid_sims is None else np.asarray(euclid_sims)[:, :k_neg]
    return _difference(e, m, max_size, s)


def pool_rates(
    pools: np.ndarray,
    lengths: np.ndarray,
    anchors: np.ndarray,
    labels: np.ndarray,
    positive: bool = True,
) -> float:
    """Label purity of a pool, the mining-quality check of seed 002 §5.1 (CUB: 40 % / 96 %).

    With ``positive`` the true-positive rate (fraction of pool members sharing their anchor's
    label), otherwise the true-negative rate (fraction not sharing it). Micro-averaged over
    all members of all anchors; NaN when the pools are empty. Labels are for evaluation only.
    """
    pools = np.asarray(pools)
    labels = np.asarray(labels)
    anchors = np.asarray(anchors)
    valid = np.arange(pools.shape[1])[None, :] < np.asarray(lengths)[:, None]
    valid &= pools >= 0
    if not valid.any():
        return float("nan")
    same = labels[np.where(valid, pools, 0)] == labels[anchors][:, None]
    rate = same[valid].mean()
    return float(rate if positive else 1.0 - rate)


def pool_size_rule(
    a: sp.spmatrix,
    n_probe: int = 200,
    pos_factor: float = 1.0,
    neg_factor: float = 2.0,
    min_k: int = 10,
    max_cluster: int = 2000,
    seed: int = 0,
) -> tuple[int, int]:
    """Label-free (k_pos, k_neg) for :func:`positive_pool` / :func:`negative_pool`.

    Seed 002 fixes k = 50 / 100, which suits ~30–60 images per class (CUB: 59). The pools
    only work when k_pos stays within the anchor's class (manifold neighbours that are still
    relevant) and k_neg reaches past it (Euclidean neighbours from other classes): with 500 per
    class, the 100 Euclidean neighbours are nearly all the same class and P⁻ is mostly false
    negatives (METHODS.md §0). The rule measures that class size from the graph:

    1. s = median over ``n_probe`` random non-isolated nodes of the local cluster size
       (:func:`labelfree.graph.manifold.local_cluster_sizes`: the conductance sweep of the
       node's manifold-similarity ranking), at most ``max_cluster``.
    2. k_pos = pos_factor·s and k_neg = neg_factor·s, at least ``min_k``; k_neg at most N // 2
       and k_pos at most k_neg (with k ≥ N − 1 both neighbour sets are the whole collection
       and the pools are empty).

    Defaults are our choice: factors 1 and 2 give seed 002's k = 50 / 100 for its ~50 images
    per class (and its ratio k_neg / k_pos = 2); the median ignores the anchors whose sweep
    stops at a tiny tight group or runs on into a neighbouring cluster. Measured on mnist5k
    digits 0–4, HOG-LDA (see ``benchmarks/bench_mining.py --pools``): 500 per class gives
    about (500, 1000), 50 per class about (50, 100).

    Args:
        a: mutual kNN graph A from :func:`labelfree.graph.manifold.mutual_knn_graph`.
        n_probe: nodes sampled (all when fewer).
        pos_factor, neg_factor: multiples of s.
        min_k: lower bound of both.
        max_cluster: largest local cluster considered (bounds the sweep cost).
        seed: probe sampling seed.

    Returns:
        ``(k_pos, k_neg)``.
    """
    a = sp.csr_matrix(a)
    n = a.shape[0]
    deg = np.diff(a.indptr)
    live = np.flatnonzero(deg > 0)
    if n < 2:
        raise ValueError(f"{n} items are too few for pools")
    if live.size == 0:
        s = float(min_k)
    else:
        rng = np.random.default_rng(seed)
        probes = rng.choice(live, size=min(n_probe, live.size), replace=False)
        s = float(np.median(local_cluster_sizes(a, probes, max_size=max_cluster)))
    k_neg = int(max(1, min(n // 2, max(min_k, round(neg_factor * s)))))
    k_pos = int(max(1, min(k_neg, max(min_k, round(pos_factor * s)))))
    return k_pos, k_neg


def euclidean_neighbours(
    x: np.ndarray, anchors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """NN^e_k of the given anchors only (exact faiss search, each anchor itself excluded).

    O(len(anchors)·N·d) time: with 10³ anchors far cheaper than a k = 100 graph of all items.
    Returns ``(sims, idx)``, both ``(len(anchors), k)``, most similar first.
    """
    anchors = np.asarray(anchors, dtype=np.int64)
    k = min(k, len(x) - 1)
    sims, idx = knn(x, k + 1, queries=np.asarray(x)[anchors])
    own = idx == anchors[:, None]
    own[~own.any(axis=1), -1] = True  # not retrieved (duplicates): drop the last instead
    first = own & (np.cumsum(own, axis=1) == 1)  # at most one column dropped per row
    keep = ~first
    return sims[keep].reshape(len(anchors), k), idx[keep].reshape(len(anchors), k)


def mine_pools(
    x: np.ndarray,
    a_hat: sp.spmatrix,
    anchors: np.ndarray,
    k_pos: int = 50,
    k_neg: int = 100,
    max_size: int = 50,
    alpha: float = 0.99,
    maxiter: int = 20,
    block: int = 256,
    degrees: np.ndarray | None = None,
    euclid: tuple[np.ndarray | None, np.ndarray] | None = None,
) -> tuple[Pool, Pool]:
    """Both pools of seed 002 §3.3 for ``anchors``: Euclidean neighbours of the anchors,
    their manifold neighbours (:func:`manifold_similarity` with topk = max(k_pos, k_neg)),
    then :func:`positive_pool` (with manifold similarities, the loss weights) and
    :func:`negative_pool` (with cosine similarities).

    ``x`` are the features the graph was built from; ``a_hat`` the normalised graph;
    ``degrees`` (off by default, as in seed 002) switches the manifold ranking to the
    degree-normalised one of :func:`manifold_similarity`. ``euclid`` = ``(sims or None, ids)``
    of the anchors' Euclidean neighbours (at least max(k_pos, k_neg) columns) when the caller
    has them already (MoM reuses the kNN table its graph was built from).
    """
    kmax = min(max(k_pos, k_neg), len(x) - 1)
    k_pos, k_neg = min(k_pos, kmax), min(k_neg, kmax)
    es, ei = euclid if euclid is not None else euclidean_neighbours(x, anchors, kmax)
    ms, mi = manifold_similarity(
        a_hat, anchors, alpha=alpha, maxiter=maxiter, topk=kmax, block=block, degrees=degrees
    )
    pos = positive_pool(mi, ei, k_pos, max_size, manifold_sims=ms)
    neg = negative_pool(ei, mi, k_neg, max_size, euclid_sims=es)
    return pos, neg
