"""kNN graphs and the mutual kNN graph Â (seed 002 §3.2, METHODS.md §1), sparse throughout.

Also the graph argument checks shared by the graph algorithms (:mod:`.manifold`, :mod:`.walk`,
:mod:`.cluster_size`): a square adjacency and anchor indices within it.

Cost model (N items, d dimensions, k neighbours):

- :func:`knn_graph`: exact O(N²·d) time; approximate (HNSW) about O(N·log N·d). Memory O(N·k)
  plus the index (N·d floats; HNSW adds about 2·M links per item).
- :func:`mutual_knn_graph`, :func:`normalize_graph`: O(N·k) time and memory.

Measured (``benchmarks/bench_mining.py``, d = 128, 2 shared CPU cores): kNN graph k = 30 exact
0.9 s / 81 s at N = 10⁴ / 10⁵ (∝ N^1.96), HNSW 2.2 s / 35 s / 538 s at 10⁴ / 10⁵ / 10⁶
(∝ N^1.2); mutual graph + Â 0.03 s / 0.46 s / 5.9 s.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from labelfree.data.imageset import DataError
from labelfree.graph.knn import knn, l2_normalize
from labelfree.graph.nn import (
    build_index,
    check_matrix,
    default_nlist,
    drop_self,
    search,
    set_search_depth,
)

#: Above this many items :func:`knn_graph` switches to approximate search by default.
APPROX_THRESHOLD = 50_000


def knn_graph(
    x: np.ndarray,
    k: int,
    approximate: bool | None = None,
    *,
    method: str = "hnsw",
    hnsw_m: int = 16,
    ef_search: int | None = None,
    nlist: int | None = None,
    nprobe: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` cosine nearest neighbours of every row of ``x``, itself excluded.

    Exact search uses :func:`labelfree.graph.knn.knn` (faiss ``IndexFlatIP``). Approximate search
    indexes the L2-normalised rows with inner product in faiss HNSW (``method="hnsw"``) or
    IVF-Flat (``method="ivf"``).

    Args:
        x: ``(N, d)`` features (normalised here; any scale).
        k: neighbours per item.
        approximate: ``None`` (default) means approximate when N > 50,000. The threshold is our
            choice, near the measured crossover (~3·10⁴ on 2 cores: exact 0.9 s vs HNSW 2.2 s
            at 10⁴, 81 s vs 35 s at 10⁵; ``benchmarks/bench_mining.py``).
        method: ``"hnsw"`` (default: no training step, high recall at k = 30) or ``"ivf"``.
        hnsw_m: HNSW links per node (faiss ``M``); efConstruction is 40. Our default 16: on
            10⁵ clustered 128-d items (32-d intrinsic) it built and searched the k = 30 graph in
            33 s at recall@30 0.95, against 52 s and 0.99 for M = 32 and ~80 s for exact search
            (2 shared cores); raise it when recall matters more than time.
        ef_search: HNSW search depth; default ``max(2·(k + 1), 64)``. Recall falls with N at a
            fixed depth (0.99 / 0.96 / 0.83 at 10⁴ / 10⁵ / 10⁶ on the benchmark data); raise it
            for millions of items.
        nlist: IVF lists; default ``4·√N`` (faiss guidance is 4–16·√N).
        nprobe: IVF lists visited per query.

    Returns:
        ``(sims, idx)``, both ``(N, k)``, most similar first; ``sims`` are cosine similarities
        (float32), ``idx`` int64. Rows the approximate index could not fill are re-searched
        exactly, so every entry is a valid item index.

    Raises:
        DataError: fewer than ``k + 1`` items, a non-2-D array or non-finite values.
    """
    x = check_matrix(x)
    n = len(x)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if n < k + 1:
        raise DataError(f"{n} items are too few for k = {k} nearest neighbours (need {k + 1})")
    if approximate is None:
        approximate = n > APPROX_THRESHOLD
    if not approximate:
        return knn(x, k)
    xb = l2_normalize(x)
    if method == "hnsw":
        index = build_index(xb, "hnsw", hnsw_m=hnsw_m, ef_construction=40)
        set_search_depth(index, ef_search=ef_search or max(2 * (k + 1), 64))
    elif method == "ivf":
        lists = nlist or default_nlist(n)
        index = build_index(xb, "ivf", nlist=lists)
        set_search_depth(index, nprobe=nprobe)
    else:
        raise ValueError(f"unknown approximate kNN method {method!r}; use 'hnsw' or 'ivf'")
    sims, idx = search(index, xb, k + 1)
    bad = np.flatnonzero((idx < 0).any(axis=1))
    if bad.size:  # too few candidates reached: fall back to exact search for those rows
        sims[bad], idx[bad] = search(build_index(xb, "flat"), xb[bad], k + 1)
    return drop_self(sims, idx)


def mutual_knn_graph(
    x: np.ndarray | None,
    k: int = 30,
    power: float = 3,
    approximate: bool | None = None,
    *,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> sp.csr_matrix:
    """Reciprocal kNN graph of seed 002 eq. (1) as a sparse symmetric matrix.

    Edge (i, j) iff j ∈ NN_k(i) and i ∈ NN_k(j), weight a_ij = [x_iᵀx_j]_+^power on
    L2-normalised rows (s_e of seed 002 §4 with power 3); no self loops. Built from the
    ``(N, k)`` neighbour table with sparse operations: the directed kNN matrix W, then the
    elementwise minimum of W and Wᵀ (an entry survives only where both directions exist).
    O(N·k) time and memory.

    Args:
        x: ``(N, d)`` features; may be ``None`` when ``neighbours`` is given.
        k: neighbours per item (seed 002 uses 30).
        power: exponent of the similarity.
        approximate: passed to :func:`knn_graph`.
        neighbours: a precomputed ``(sims, idx)`` table with at least ``k`` columns, most
            similar first (e.g. from :func:`knn_graph` with a larger k); only the first ``k``
            columns are used. Entries with index −1 are ignored.

    Returns:
        ``(N, N)`` float32 CSR matrix, symmetric, zero diagonal, non-negative.
    """
    if neighbours is None:
        if x is None:
            raise ValueError("pass features x or a precomputed neighbours=(sims, idx) table")
        sims, idx = knn_graph(x, k, approximate=approximate)
    else:
        sims, idx = (np.asarray(a) for a in neighbours)
        if idx.ndim != 2 or idx.shape != sims.shape or idx.shape[1] < k:
            raise ValueError(
                f"neighbours must be two (N, ≥{k}) arrays, got {sims.shape} and {idx.shape}"
            )
        sims, idx = sims[:, :k], idx[:, :k]
    n = len(idx)
    rows = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    cols = idx.reshape(-1).astype(np.int64)
    vals = np.maximum(sims.reshape(-1).astype(np.float32), 0) ** np.float32(power)
    keep = (cols >= 0) & (cols != rows) & (vals > 0)
    w = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    w.sum_duplicates()
    # The minimum is 0 wherever only one direction exists, so only reciprocal edges remain; it
    # is also exactly symmetric even when faiss returns slightly different s_ij and s_ji.
    a = w.minimum(w.T.tocsr()).tocsr()
    a.eliminate_zeros()
    a.sort_indices()
    return a


def normalize_graph(a: sp.spmatrix) -> sp.csr_matrix:
    """Â = D^{-1/2} A D^{-1/2} with D = diag(A·1) (seed 002 §3.2, below eq. (2)).

    Rows and columns of isolated nodes (degree 0) stay zero instead of dividing by zero.
    Keeps the dtype of ``a``.
    """
    a = sp.csr_matrix(a)
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(deg)
    pos = deg > 0
    inv[pos] = 1.0 / np.sqrt(deg[pos])
    out = a.copy()
    row = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    out.data = (a.data * inv[row] * inv[a.indices]).astype(a.dtype, copy=False)
    return out


def connected_components(a: sp.spmatrix) -> tuple[int, np.ndarray]:
    """``(n_components, labels)`` of the undirected graph ``a`` (scipy.sparse.csgraph)."""
    n, labels = csgraph.connected_components(a, directed=False)
    return int(n), labels


def largest_component(a: sp.spmatrix) -> np.ndarray:
    """Sorted indices of the nodes of the largest connected component (ties: lowest label)."""
    _, labels = connected_components(a)
    return np.flatnonzero(labels == np.argmax(np.bincount(labels)))


def check_anchors(anchors: np.ndarray | list[int], n: int) -> np.ndarray:
    """``anchors`` as a flat int64 array; IndexError when one lies outside [0, n)."""
    anchors = np.asarray(anchors, dtype=np.int64).reshape(-1)
    if anchors.size and (anchors.min() < 0 or anchors.max() >= n):
        raise IndexError(
            f"anchor indices must lie in [0, {n}), got [{anchors.min()}, {anchors.max()}]"
        )
    return anchors


def check_square(a: sp.spmatrix) -> sp.csr_matrix:
    """``a`` as CSR; ValueError when it is not square."""
    a = sp.csr_matrix(a)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"the graph must be a square matrix, got shape {a.shape}")
    return a
