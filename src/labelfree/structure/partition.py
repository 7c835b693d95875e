"""Partitions of the training set into groups that each train their own learner, and the
class-balanced batches drawn inside one group (Divide & Conquer, seed 001 Ch.2; DeepCluster).

* :func:`match_clusters` keeps each learner on "its" data when the set is re-clustered: the new
  clusters are matched to the old ones by the Hungarian algorithm on membership overlap
  (``scipy.optimize.linear_sum_assignment``), so cluster ids that k-means permutes from one
  reclustering to the next do not move data between learners.
* :func:`class_batches` draws batches of ``per_class`` items of each of several (pseudo-)classes,
  the sampling that margin and triplet losses need to find positives in every batch.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "class_batches",
    "cluster_uniform_probabilities",
    "match_clusters",
    "overlap",
    "pseudo_class_count",
    "random_partition",
]


def pseudo_class_count(n: int) -> int:
    """Pseudo-classes for ``n`` unlabeled images: ``n / 30`` — the papers' fine-grained regime
    of ~30-60 images per class (CUB, Cars) — between 2 and 1,000. Over-clustering a coarser
    collection is the safe side: it splits classes rather than merges them (DeepCluster uses
    ten times the number of classes)."""
    return int(np.clip(round(n / 30), 2, 1000))


def overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts: entry ``[i, j]`` is the number of items in cluster ``i`` of ``a`` and
    cluster ``j`` of ``b`` (both ``(N,)`` ids in ``0..k-1``)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return np.bincount(a * k + b, minlength=k * k).reshape(k, k)


def match_clusters(previous: np.ndarray | None, new: np.ndarray, k: int) -> np.ndarray:
    """New cluster ids renamed to the learners that owned most of their items before.

    Args:
        previous: ``(N,)`` learner of each item after the last reclustering, or None (the first
            clustering: learner ``c`` takes cluster ``c``).
        new: ``(N,)`` cluster of each item from the new clustering (ids ``0..k-1``).

    Returns ``(N,)`` learner ids: the permutation of ``new``'s ids that maximises the number of
    items staying with their learner (a maximum-weight perfect matching of clusters).
    """
    new = np.asarray(new, np.int64)
    if previous is None:
        return new.copy()
    counts = overlap(new, previous, k)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    rename = np.empty(k, np.int64)
    rename[rows] = cols
    return rename[new]


def cluster_uniform_probabilities(assign: np.ndarray) -> np.ndarray:
    """``(N,)`` sampling probabilities that pick a non-empty cluster uniformly, then an item
    uniformly inside it (DeepCluster's sampler): item ``i`` gets ``1 / (K·|c(i)|)``."""
    assign = np.asarray(assign, np.int64)
    sizes = np.bincount(assign)
    p = 1.0 / (np.count_nonzero(sizes) * sizes[assign])
    return p / p.sum()  # exact up to rounding already; renormalised for rng.choice


def random_partition(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(N,)`` ids of ``k`` groups of (nearly) equal size at random: the ablation row "random
    partition" of seed 001 Table 2.6."""
    return (rng.permutation(n) % k).astype(np.int64)


def class_batches(
    members: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    per_class: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Batches over ``members`` (indices into ``labels``), each of ``batch_size // per_class``
    classes with ``per_class`` items each (drawn without replacement where a class has enough).

    Only classes with at least two members among ``members`` are drawn (a lone item has no
    positive; the authors' code drops such classes from a cluster too). About ``len(members) /
    batch_size`` batches, so an epoch over all groups sees each item about once. Returns an empty
    list when no class has two members.
    """
    members = np.asarray(members, np.int64)
    lab = labels[members]
    classes, counts = np.unique(lab, return_counts=True)
    classes = classes[counts >= 2]
    if len(classes) == 0:
        return []
    by_class = {int(c): members[lab == c] for c in classes}
    n_classes = max(2, batch_size // per_class)
    n_batches = max(1, math.ceil(len(members) / batch_size))
    out = []
    for _ in range(n_batches):
        chosen = rng.choice(classes, size=min(n_classes, len(classes)), replace=False)
        parts = []
        for c in chosen:
            pool = by_class[int(c)]
            parts.append(rng.choice(pool, size=per_class, replace=len(pool) < per_class))
        out.append(np.concatenate(parts))
    return out


def pools_to_classes(
    anchors: np.ndarray, members: np.ndarray, lengths: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """A partition from positive pools: pool ``r`` is anchor ``anchors[r]`` with its first
    ``lengths[r]`` ``members[r]``; an item in several pools joins the one whose anchor it is most
    similar to (dot product of rows of ``x``); −1 for items in none. Returns (N,) int64."""
    rows = np.concatenate([np.arange(len(anchors)), np.repeat(np.arange(len(anchors)), lengths)])
    valid = np.arange(members.shape[1])[None, :] < np.asarray(lengths)[:, None]
    items = np.concatenate([anchors, members[valid]]).astype(np.int64)
    sims = np.einsum("ij,ij->i", x[items], x[anchors[rows]])
    order = np.lexsort((-sims, items))  # by item, the most similar anchor first
    first = np.unique(items[order], return_index=True)[1]
    out = np.full(len(x), -1, dtype=np.int64)
    out[items[order][first]] = rows[order][first]
    return out
