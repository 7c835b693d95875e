"""Retrieval and clustering metrics on held-out classes (the protocol of METHODS.md section 0).

Retrieval is leave-one-out: every item queries all *other* items of the same set; the query
itself is never among its results. Definitions (Musgrave et al. 2020, "A Metric Learning
Reality Check"), for a query of class ``c`` with ``R`` other items of class ``c``:

* ``R@K`` — 1 if at least one of the K nearest other items has class ``c``, averaged over
  queries (the "Recall@K" of the deep metric learning literature; equal to pml's
  ``precision_at_1`` for K = 1).
* ``R-precision`` — (number of class-``c`` items among the top R) / R.
* ``MAP@R`` — (1/R) Σ_{i ≤ R} P@i · rel_i, where rel_i = 1 when the i-th result has class
  ``c`` and P@i is the precision of the first i results.
* ``mAP`` — average precision over the full ranking of all N − 1 other items: the mean, over
  the R relevant items j, of |{relevant with score ≥ s_j}| / |{all with score ≥ s_j}|. This
  is scikit-learn's ``average_precision_score`` definition; it is independent of how ties are
  ordered and equals the textbook AP when there are no ties.

Choices, stated once:

* ``normalize=True`` (default) L2-normalises every row first, so ranking is by cosine
  similarity. This makes raw features (pixels, HOG) comparable with the L2-normalised
  embeddings the methods produce; all-zero rows stay zero. With ``normalize=False`` ranking
  is by the raw inner product.
* Queries whose class has no other member (R = 0) are excluded from every retrieval metric:
  they have nothing to retrieve. They are still in the reference set that other queries
  search. ``n_queries`` reports how many queries counted.
* For R@K, R-precision and MAP@R the ordering of the top results, ties included, is faiss's
  exact ``IndexFlatIP`` search.

Cost model (N items, d dims, R_max = largest class size − 1): the top-max(K, R_max) search is
O(N² d) time and O(chunk · max(K, R_max)) memory; the full-ranking mAP is another O(N² d)
matrix product plus a per-query sort of the items scoring at least as high as the query's
worst relevant item, O(chunk · N) memory. Nothing of size N × N is ever held. Measured by
``benchmarks/bench_eval.py`` (60,000 × 128, 600 items per class, 2 shared CPU cores): 58–80 s
and 640 MiB peak RSS without mAP, within run-to-run noise of pml's AccuracyCalculator
(69–71 s; the exact faiss search dominates both), which peaked at 2.6 GiB.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faiss
import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from labelfree.data.imageset import DataError
from labelfree.graph.knn import l2_normalize
from labelfree.graph.nn import build_index, check_matrix, drop_self, kmeans, search

__all__ = [
    "cluster_nmi",
    "evaluate_embeddings",
    "l2_normalize",
    "ranking_metrics",
    "recall_ks_for",
    "retrieval_metrics",
]


# Below this many items faiss's OpenMP start-up and barriers cost more than they save (on a
# loaded 2-core machine, a 120-point k-means took 1 s with 2 threads and 12 ms with 1).
_SMALL_N = 4096


@contextmanager
def _faiss_threads_for(n: int) -> Iterator[None]:
    """Run faiss single-threaded for small problems; restore the thread count afterwards."""
    if n >= _SMALL_N:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _check_inputs(emb: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``emb`` to a contiguous float32 (N, d) array and labels to (N,)."""
    emb = np.asarray(emb)
    labels = np.asarray(labels)
    if emb.ndim != 2:
        raise DataError(f"embeddings must be a 2-D (N, d) array, got shape {emb.shape}")
    if labels.ndim != 1:
        raise DataError(f"labels must be a 1-D array, got shape {labels.shape}")
    if len(labels) != len(emb):
        raise DataError(f"{len(labels)} labels for {len(emb)} embeddings: lengths must match")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataError(f"embeddings are empty (shape {emb.shape})")
    return check_matrix(emb, "embeddings"), labels


def recall_ks_for(n_items: int, name: str | None = None) -> tuple[int, ...]:
    """The Recall@K values the protocol reports for a set.

    ``(1, 10, 100, 1000)`` for Stanford Online Products (``name`` starting with "sop",
    case-insensitive), else ``(1, 2, 4, 8)``. Values of K that are not smaller than
    ``n_items`` are dropped (a query has only ``n_items - 1`` others, so such a K is trivially
    1.0); K = 1 is always kept.
    """
    ks = (1, 10, 100, 1000) if name is not None and name.lower().startswith("sop") else (1, 2, 4, 8)
    kept = tuple(k for k in ks if k < n_items)
    return kept if kept else (1,)


def _class_structure(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer class ids, per-item R (other members of its class), members sorted by class."""
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1).astype(np.int64)
    r_per_item = counts[inv].astype(np.int64) - 1
    return inv, r_per_item, counts


def _full_ranking_ap(
    x: np.ndarray,
    inv: np.ndarray,
    counts: np.ndarray,
    valid: np.ndarray,
    chunk_size: int,
) -> float:
    """Mean average precision over the full ranking, queries in chunks (see module doc)."""
    order = np.argsort(inv, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)))
    query_ids = np.flatnonzero(valid)
    # A block of queries x all items is at most 2**25 floats (128 MiB).
    chunk_size = max(1, min(chunk_size, 2**25 // len(x)))
    total = 0.0
    for c0 in range(0, len(query_ids), chunk_size):
        qids = query_ids[c0 : c0 + chunk_size]
        sims = x[qids] @ x.T  # (chunk, N)
        sims[np.arange(len(qids)), qids] = -np.inf  # the query is not its own result
        for row, q in enumerate(qids):
            s = sims[row]
            c = inv[q]
            members = order[starts[c] : starts[c + 1]]
            rel = np.sort(s[members[members != q]])  # ascending, length R
            r = len(rel)
            cand = s[s >= rel[0]]
            cand.sort()
            # |{all with score >= s_j}| and |{relevant with score >= s_j}| for each relevant j.
            n_all = len(cand) - np.searchsorted(cand, rel, side="left")
            n_rel = r - np.searchsorted(rel, rel, side="left")
            total += float(np.sum(n_rel / n_all)) / r
    return total / len(query_ids)


def retrieval_metrics(
    emb: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int] = (1, 2, 4, 8),
    normalize: bool = True,
    map_full: bool = True,
    chunk_size: int = 4096,
) -> dict[str, float]:
    """Leave-one-out retrieval metrics of ``emb`` against its own ``labels``.

    Args:
        emb: ``(N, d)`` embeddings (any float dtype; computed in float32).
        labels: ``(N,)`` class of each item (ints or strings); used only for scoring.
        ks: the K of each ``R@K`` key.
        normalize: L2-normalise rows first so that ranking is by cosine similarity (see the
            module docstring); ``False`` ranks by the raw inner product.
        map_full: also compute ``mAP`` over the full ranking (an extra O(N² d) pass, roughly
            doubling the time); when ``False`` the key is absent.
        chunk_size: queries searched at a time; bounds peak memory at about
            ``chunk_size · max(K, R_max) · 12`` bytes for the neighbour lists (the mAP pass
            further limits its block of similarities to 2**25 floats, 128 MiB).

    Returns:
        ``{"R@1": ..., "R@2": ..., "MAP@R": ..., "R-precision": ..., "mAP": ...}`` as floats in
        [0, 1], averaged over the queries whose class has at least one other member.

    Raises:
        DataError: NaN/inf embeddings (with the count), mismatched lengths, bad shapes, or no
            query with another member of its class.
    """
    x, labels = _check_inputs(emb, labels)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise DataError(f"ks must be positive integers, got {ks}")
    if chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    if normalize:
        x = l2_normalize(x)
    n = len(x)
    inv, r_per_item, counts = _class_structure(labels)
    valid = r_per_item > 0
    query_ids_all = np.flatnonzero(valid)
    if len(query_ids_all) == 0:
        raise DataError(
            f"no query has another item of its class ({n} items, {len(counts)} classes, "
            "every class has one member): retrieval metrics are undefined"
        )

    # Neighbours needed: enough for the largest K and the largest R, plus the query itself.
    depth = min(n - 1, max(max(ks), int(r_per_item.max())))
    with _faiss_threads_for(n):
        out = _top_depth_metrics(x, inv, r_per_item, query_ids_all, ks, depth, chunk_size)
    if map_full:
        out["mAP"] = _full_ranking_ap(x, inv, counts, valid, chunk_size)
    return out


def _top_depth_metrics(
    x: np.ndarray,
    inv: np.ndarray,
    r_per_item: np.ndarray,
    query_ids_all: np.ndarray,
    ks: tuple[int, ...],
    depth: int,
    chunk_size: int,
) -> dict[str, float]:
    """R@K, R-precision and MAP@R from faiss's exact top-``depth`` lists, queries in chunks."""
    index = build_index(x, "flat")
    acc = _ListScores(ks, depth)
    for c0 in range(0, len(query_ids_all), chunk_size):
        qids = query_ids_all[c0 : c0 + chunk_size]
        _, nbr = drop_self(*search(index, x[qids], depth + 1), ids=qids)
        acc.add(nbr, qids, inv, r_per_item)
    return acc.result(len(query_ids_all))


class _ListScores:
    """Accumulates R@K, R-precision and MAP@R over chunks of ranked neighbour lists."""

    def __init__(self, ks: tuple[int, ...], depth: int) -> None:
        self.ks, self.depth = ks, depth
        self.hits_at = {k: 0 for k in ks}
        self.sum_rprec = 0.0
        self.sum_map_r = 0.0
        self.cols = np.arange(1, depth + 1)

    def add(
        self, nbr: np.ndarray, qids: np.ndarray, inv: np.ndarray, r_per_item: np.ndarray
    ) -> None:
        """``nbr``: (chunk, depth) ranked item ids of the queries ``qids`` (self excluded;
        -1 marks an empty slot, never relevant)."""
        rel = (inv[nbr] == inv[qids][:, None]) & (nbr >= 0)
        r = r_per_item[qids]
        # R@K: position of the first relevant result.
        any_rel = rel.any(axis=1)
        first = np.where(any_rel, np.argmax(rel, axis=1), self.depth)
        for k in self.ks:
            self.hits_at[k] += int(np.sum(first < k))
        within_r = self.cols[None, :] <= r[:, None]
        rel_r = rel & within_r
        self.sum_rprec += float(np.sum(rel_r.sum(axis=1) / r))
        prec_at_i = np.cumsum(rel_r, axis=1) / self.cols[None, :]
        self.sum_map_r += float(np.sum((prec_at_i * rel_r).sum(axis=1) / r))

    def result(self, nq: int) -> dict[str, float]:
        out: dict[str, float] = {f"R@{k}": self.hits_at[k] / nq for k in self.ks}
        out["MAP@R"] = self.sum_map_r / nq
        out["R-precision"] = self.sum_rprec / nq
        return out


def ranking_metrics(
    ranked: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 2, 4, 8)
) -> dict[str, float]:
    """R@K, R-precision and MAP@R of given leave-one-out rankings (e.g. after re-ranking).

    ``ranked[i]`` lists item ids of the same set ranked for query ``i``, best first, without
    ``i`` itself; -1 pads an empty slot. Lists shorter than a query's R count the missing ranks
    as misses, so pass at least ``max R`` columns for exact MAP@R and R-precision.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    labels = np.asarray(labels).reshape(-1)
    if ranked.ndim != 2 or len(ranked) != len(labels):
        raise DataError(f"ranked must be (N, depth) with N = {len(labels)}, got {ranked.shape}")
    if (ranked == np.arange(len(ranked))[:, None]).any():
        raise DataError("a ranking lists its own query: leave-one-out rankings exclude it")
    ks = tuple(int(k) for k in ks)
    inv, r_per_item, _ = _class_structure(labels)
    qids = np.flatnonzero(r_per_item > 0)
    if len(qids) == 0:
        raise DataError("no query has another item of its class: retrieval metrics are undefined")
    depth = max(ranked.shape[1], max(ks))
    if ranked.shape[1] < depth:
        ranked = np.pad(ranked, ((0, 0), (0, depth - ranked.shape[1])), constant_values=-1)
    acc = _ListScores(ks, depth)
    acc.add(ranked[qids], qids, inv, r_per_item)
    return acc.result(len(qids))


def cluster_nmi(
    emb: np.ndarray,
    labels: np.ndarray,
    n_clusters: int | None = None,
    seed: int = 0,
    niter: int = 50,
    nredo: int = 5,
    normalize: bool = True,
) -> tuple[float, dict[str, Any]]:
    """NMI between faiss k-means clusters of ``emb`` and the class ``labels``.

    k-means runs on all items (including classes with a single member) with ``k`` = the number
    of classes unless ``n_clusters`` is given. With ``normalize=True`` rows are L2-normalised
    and k-means is spherical (unit-norm centroids, cosine assignment). Every point is used for
    training (faiss would otherwise subsample to 256 points per centroid). The best of
    ``nredo`` restarts (by k-means objective) is kept. NMI is sklearn's
    ``normalized_mutual_info_score`` (arithmetic normalisation).

    Returns:
        ``(nmi, settings)`` where ``settings`` records the k-means configuration
        (``algorithm``, ``k``, ``niter``, ``nredo``, ``seed``, ``spherical``,
        ``max_points_per_centroid``) to be reported beside the number.

    Raises:
        DataError: bad inputs, or ``k`` larger than the number of items.
    """
    x, labels = _check_inputs(emb, labels)
    if normalize:
        x = l2_normalize(x)
    n, d = x.shape
    k = int(len(np.unique(labels)) if n_clusters is None else n_clusters)
    if not 1 <= k <= n:
        raise DataError(f"k-means needs 1 <= k <= N, got k={k} for N={n} items")
    max_pts = int(math.ceil(n / k)) + 1
    with _faiss_threads_for(n):
        res = kmeans(
            x,
            k,
            niter=niter,
            nredo=nredo,
            seed=seed,
            spherical=normalize,
            max_points_per_centroid=max_pts,
        )
    nmi = float(normalized_mutual_info_score(labels, res.assign))
    return nmi, {**res.settings, "max_points_per_centroid": max_pts}


def evaluate_embeddings(
    emb: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int] = (1, 2, 4, 8),
    nmi: bool = True,
    seed: int = 0,
    normalize: bool = True,
    map_full: bool = True,
) -> dict[str, Any]:
    """All protocol metrics of ``emb`` on held-out classes in one flat dict.

    Returns the keys of :func:`retrieval_metrics` plus ``"NMI"`` (float) and
    ``"nmi_settings"`` (dict, see :func:`cluster_nmi`) when ``nmi`` is true, ``"n_queries"``
    (queries that counted: those with another item of their class) and ``"n_classes"``.
    """
    x, labels = _check_inputs(emb, labels)
    out: dict[str, Any] = dict(
        retrieval_metrics(x, labels, ks=ks, normalize=normalize, map_full=map_full)
    )
    if nmi:
        value, settings = cluster_nmi(x, labels, seed=seed, normalize=normalize)
        out["NMI"] = value
        out["nmi_settings"] = settings
    _, r_per_item, counts = _class_structure(labels)
    out["n_queries"] = int(np.sum(r_per_item > 0))
    out["n_classes"] = len(counts)
    return out
