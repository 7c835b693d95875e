"""Local cluster sizes around anchors, for the label-free pool-size rule.

A PageRank-style sweep cut over each anchor's manifold similarity (see
:func:`local_cluster_sizes`); :func:`labelfree.structure.pools.pool_size_rule` builds on it.

Cost model: one block-CG diffusion per ``block`` anchors (:mod:`.blockcg`), then a sweep of at
most ``max_size`` nodes per anchor, O(max_size · degree).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from labelfree.graph.blockcg import iter_solutions
from labelfree.graph.mutual import check_anchors, check_square, normalize_graph


def _window_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(values[lo[m] : hi[m] + 1]) for every m (inclusive bounds), by a sparse table."""
    table = [values]
    while (1 << len(table)) <= len(values):
        half = 1 << (len(table) - 1)
        prev = table[-1]
        table.append(np.minimum(prev[:-half], prev[half:]))
    level = np.floor(np.log2(hi - lo + 1)).astype(np.int64)
    out = np.empty(len(lo))
    for lev in np.unique(level):
        sel = level == lev
        t = table[lev]
        out[sel] = np.minimum(t[lo[sel]], t[hi[sel] - (1 << lev) + 1])
    return out


def _sweep_size(phi: np.ndarray, window: float, min_size: int) -> int:
    """Smallest size m ≥ ``min_size`` whose conductance is the minimum over [m/window, m·window].

    Falls back to the global minimum when no size qualifies.
    """
    m = len(phi)
    sizes = np.arange(1, m + 1)
    lo = np.maximum(np.floor(sizes / window).astype(np.int64), min_size) - 1
    hi = np.minimum(np.ceil(sizes * window).astype(np.int64), m) - 1
    ok = np.isfinite(phi) & (sizes >= min_size) & (lo <= hi)
    if not ok.any():
        return int(np.argmin(phi)) + 1 if np.isfinite(phi).any() else m
    cand = np.flatnonzero(ok)
    good = cand[phi[cand] <= _window_min(phi, lo[cand], hi[cand])]
    if good.size:
        return int(good[0]) + 1
    return int(np.argmin(phi)) + 1


def local_cluster_sizes(
    a: sp.spmatrix,
    anchors: np.ndarray | list[int],
    max_size: int = 2000,
    min_size: int = 5,
    window: float = 2.0,
    alpha: float = 0.99,
    maxiter: int = 20,
    block: int = 64,
) -> np.ndarray:
    """Size of the manifold cluster around each anchor, found without labels.

    The manifold similarity f of an anchor is, up to a degree factor, a personalised PageRank
    vector p: p_j / d_j = f_j / √(d_i·d_j). Nodes are sorted by f_j / √d_j and the prefixes S of
    that order are swept, as in the PageRank sweep cut of Andersen, Chung & Lang (FOCS 2006),
    with conductance φ(S) = cut(S) / vol(S) for sets holding at most half the graph's volume
    (the smaller side of a cut is the cluster; otherwise the complement of one far class wins on
    data with few classes).

    Choice of the cut (ours): the global minimum of φ over the sweep is biased toward merging
    clusters that touch (merging two clusters joined by any edge lowers cut/vol), so the size
    returned is the *smallest* m ≥ ``min_size`` whose φ(m) is the minimum over all sizes in
    [m / window, m · window] (a boundary that holds across a factor-2 change of scale), falling
    back to the global minimum. On Gaussian clusters of 50 or 500 points and on mnist5k HOG-LDA
    features (50 or 500 per class) the median over anchors lands within 5 % of the true class
    size, where the global minimum gives 1–3 merged classes.

    Args:
        a: symmetric non-negative adjacency (e.g. from :func:`mutual_knn_graph`).
        anchors: nodes to measure.
        max_size: longest prefix swept (bounds the cost, O(max_size · degree) per anchor).
        min_size: smallest cluster considered (tiny tight groups are not classes).
        window: scale factor of the local-minimum test.
        alpha, maxiter: diffusion parameters (as :func:`manifold_similarity`).
        block: anchors diffused together.

    Returns:
        ``(len(anchors),)`` int64 cluster sizes (the anchor counted); 1 for isolated anchors,
        the number of reached nodes when that is at most ``min_size``.
    """
    a = check_square(a).astype(np.float64)
    n = a.shape[0]
    anchors = check_anchors(anchors, n)
    deg = np.asarray(a.sum(axis=1)).ravel()
    vol_total = deg.sum()
    a_hat = normalize_graph(a)
    scale = np.zeros(n)
    scale[deg > 0] = 1.0 / np.sqrt(deg[deg > 0])
    limit = min(max_size, n)

    def rhs(sl: slice) -> np.ndarray:
        cols = anchors[sl]
        b = np.zeros((n, len(cols)))
        b[cols, np.arange(len(cols))] = 1 - alpha
        return b

    sizes = np.ones(len(anchors), dtype=np.int64)
    for sl, f in iter_solutions(a_hat, anchors, rhs, alpha, 1e-8, maxiter, block):
        score = f * scale[:, None]
        for c, anchor in enumerate(anchors[sl]):
            if deg[anchor] == 0:
                continue
            col = score[:, c]
            col[anchor] = np.inf  # the anchor starts its own cluster
            m = min(limit, int((col > 0).sum()))
            if m <= min_size:
                sizes[sl.start + c] = m
                continue
            top = np.argpartition(-col, m - 1)[:m]
            order = top[np.argsort(-col[top], kind="stable")]
            sub = a[order][:, order]
            inner = np.asarray(sp.tril(sub, k=-1).sum(axis=1)).ravel()  # weight to earlier nodes
            vol = np.cumsum(deg[order])
            cut = vol - 2 * np.cumsum(inner)
            smaller = (vol > 0) & (2 * vol <= vol_total)
            phi = np.divide(cut, vol, out=np.full(m, np.inf), where=smaller)
            sizes[sl.start + c] = _sweep_size(phi, window, min_size)
    return sizes
