"""One thin nearest-neighbour layer over faiss: index building, search, "drop self", k-means.

Everything that searches neighbours (the kNN table and graphs, retrieval metrics, the search
index, k-means in the structure steps and in NMI) goes through these few functions, so an index
kind, a GPU or a new metric is added in one place.

- :func:`make_index` / :func:`build_index`: ``flat`` (exact), ``hnsw``, ``ivf``, or any faiss
  index-factory string (``"IVF256,PQ16"``, ``"HNSW32,Flat"``), inner product by default (cosine on
  L2-normalised rows); on ``device="cuda"`` the index moves to the GPU where faiss has one.
- :func:`search` returns ``(similarities, int64 ids)``.
- :func:`drop_self` removes each query's own id from a ``k + 1`` result (the one routine used by
  every self-search).
- :func:`kmeans`: faiss k-means with its settings recorded.
- :func:`check_matrix`: the one finite 2-D float32 check with a :class:`DataError` naming
  ``what``.

Cost: exact search O(N·Q·d) time in blocks, O(Q·k) memory; HNSW O(N·log N·M) to build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from labelfree.data.imageset import DataError

KINDS = ("flat", "hnsw", "ivf")
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


def check_matrix(x: Any, what: str = "features") -> np.ndarray:
    """``x`` as a contiguous float32 ``(N, d)`` array; a 1-D vector is one row. A non-2-D array
    or NaN / inf values are a :class:`DataError` naming ``what`` (and the first bad rows)."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (items × dimensions), got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{what}: {int(bad.sum())} NaN/inf values in {len(rows)} rows "
            f"(first rows: {list(map(int, rows[:5]))})"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` items: 4·√N (faiss guidance 4–16·√N), at most N / 39 so that every
    list has the 39 training points faiss asks for."""
    return max(1, min(n // 39, int(4 * math.sqrt(n))))


def make_index(
    d: int,
    kind: str = "flat",
    *,
    metric: str = "ip",
    hnsw_m: int = 32,
    ef_construction: int = 40,
    nlist: int = 1,
    device: str = "cpu",
) -> faiss.Index:
    """An empty index of ``d`` dimensions: ``flat`` | ``hnsw`` | ``ivf`` (``nlist`` lists) or
    a faiss index-factory string; on a CUDA device when asked and faiss has GPU support."""
    if metric not in _METRICS:
        raise ValueError(f"unknown metric {metric!r}; use 'ip' or 'l2'")
    m = _METRICS[metric]
    if kind == "flat":
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), m)
        index.hnsw.efConstruction = int(ef_construction)
    elif kind == "ivf":
        index = faiss.index_factory(d, f"IVF{int(nlist)},Flat", m)
    elif "," in kind or kind.startswith(("IVF", "HNSW", "PQ", "OPQ", "Flat", "PCA")):
        try:
            index = faiss.index_factory(d, kind, m)
        except RuntimeError as exc:
            raise DataError(f"faiss cannot build index {kind!r}: {exc}") from None
    else:
        raise DataError(f"unknown index kind {kind!r}; use {', '.join(KINDS)} or a factory string")
    if str(device).startswith("cuda") and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def set_search_depth(
    index: faiss.Index, ef_search: int | None = None, nprobe: int | None = None
) -> None:
    """HNSW search depth and IVF lists visited (each ignored by indexes without it)."""
    if ef_search is not None:
        hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = int(ef_search)
    if nprobe is not None:
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            return
        ivf.nprobe = min(int(nprobe), ivf.nlist)


def build_index(
    x: np.ndarray, kind: str = "flat", *, seed: int | None = None, **kw: Any
) -> faiss.Index:
    """An index of the rows of ``x`` (trained first where the kind needs it; ``seed`` seeds
    the IVF coarse k-means, default faiss's own 1234)."""
    x = check_matrix(x)
    index = make_index(x.shape[1], kind, **kw)
    if not index.is_trained:
        if seed is not None:
            try:
                faiss.extract_index_ivf(index).cp.seed = int(seed)
            except RuntimeError:
                pass
        index.train(x)
    index.add(x)
    return index


def search(index: faiss.Index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ids of ``index`` per query row: ``(scores float32, ids int64)``, best
    first; −1 where the index found fewer than ``k``."""
    sims, idx = index.search(check_matrix(q, "queries"), int(k))
    return sims, idx.astype(np.int64, copy=False)


def drop_self(
    sims: np.ndarray, idx: np.ndarray, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id (``ids``, default ``0..Q−1``) from a ``(Q, k + 1)`` result.

    Exactly one column goes per row: the first occurrence of the row's own id, or the last
    column when exact ties with duplicates pushed it out of the list.
    """
    q, width = idx.shape
    ids = np.arange(q) if ids is None else np.asarray(ids)
    own = idx == ids[:, None]
    own[~own.any(axis=1), -1] = True
    keep = ~(own & (np.cumsum(own, axis=1) == 1))
    return sims[keep].reshape(q, width - 1), idx[keep].reshape(q, width - 1)


@dataclass
class KMeansResult:
    centroids: np.ndarray  # (k, d) float32
    assign: np.ndarray  # (N,) int64
    dist: np.ndarray  # (N,) float32: squared L2 (or inner product when spherical) to the centre
    settings: dict[str, Any]


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    niter: int = 25,
    nredo: int = 1,
    seed: int = 0,
    spherical: bool = False,
    max_points_per_centroid: int | None = None,
) -> KMeansResult:
    """faiss k-means of the rows of ``x`` into ``k`` clusters, each item assigned to its
    nearest centre (by inner product when ``spherical``)."""
    x = check_matrix(x)
    n, d = x.shape
    if not 1 <= k <= n:
        raise DataError(f"k-means needs 1 <= k <= N, got k={k} for N={n} items")
    km = faiss.Kmeans(
        d,
        int(k),
        niter=int(niter),
        nredo=int(nredo),
        seed=int(seed),
        spherical=bool(spherical),
        max_points_per_centroid=int(max_points_per_centroid or 256),
        min_points_per_centroid=1,
        verbose=False,
    )
    km.train(x)
    dist, assign = km.index.search(x, 1)
    settings = {
        "algorithm": "faiss.Kmeans",
        "k": int(k),
        "niter": int(niter),
        "nredo": int(nredo),
        "seed": int(seed),
        "spherical": bool(spherical),
    }
    return KMeansResult(km.centroids.copy(), assign[:, 0].astype(np.int64), dist[:, 0], settings)
