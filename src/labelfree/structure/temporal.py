"""Local temporal pooling (LTP) of similarities between frames of videos — seed 001 §3.2.5.

CliqueCNN pools the similarity of two frames over a short window of their videos (Eq. 3.9)::

    s'_ij = 1/(2p+1) · Σ_{n=-p..p} φ'(x^a_{k+n})ᵀ φ'(x^b_{l+n}),   p = 3 frames,

where frame ``i`` is frame ``k`` of video ``a`` and ``j`` is frame ``l`` of video ``b``: the
pooled similarity compares the two *sub-sequences* aligned at ``i`` and ``j``, which captures
how posture changes over time (a gait cycle) rather than one posture.

**Boundary rule** (the thesis does not say what happens near the ends of a video). Offsets are
taken in frame-index units; a frame ``k+n`` that the video lacks is

* ``"clamp"`` (default): replaced by the video's nearest existing frame — at the ends of a video
  the first / last frame repeats. Chosen as the default because it keeps all 2p+1 terms, so
  for L2-normalised φ' the pooled self-similarity stays 1 everywhere and ``s'`` stays in [−1, 1]
  — the pooled similarities near a video's ends are on the same scale as elsewhere, which the
  grouping step's thresholds rely on.
* ``"zero"``: left out of the sum while the denominator stays 2p+1 (it contributes 0). Frames
  near the ends then have pooled self-similarity below 1.

Frames are matched by frame index within a video (``meta["frame"]``), so gaps (a subsampled
video) are handled: under ``"clamp"`` a missing interior frame is replaced by the nearest
existing one (the earlier on a tie).

**The stacked form.** Both rules make ``s'`` an inner product:
``s'_ij = Φ_iᵀ Φ_j`` with ``Φ_i = [φ'(x_{k-p}); …; φ'(x_{k+p})] / √(2p+1)`` (a missing frame is
a zero block under ``"zero"``). :func:`ltp_stack` returns Φ, so any kNN search (faiss, the
grouping step's neighbourhoods) on Φ ranks by the pooled similarity exactly. (A temporally
*averaged* embedding (1/(2p+1))·Σ_n φ'(x_{k+n}) is **not** equivalent: its inner products mix
misaligned offsets n ≠ m.) :func:`ltp_pair_similarity` evaluates s' for given pairs without
building Φ, and :func:`ltp_similarity_matrix` the pooled rows of some queries.

Cost model: Φ is ``(N, (2p+1)·d)`` float32 — 7× the embedding for p = 3; pairs cost
``O(P·(2p+1)·d)``; neighbour tables are built in ``O(N log N)``.
"""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.graph.knn import l2_normalize

__all__ = [
    "BOUNDARIES",
    "DEFAULT_P",
    "ltp_pair_similarity",
    "ltp_similarity_matrix",
    "ltp_stack",
    "temporal_neighbors",
]

#: The neighbourhood radius of seed 001 §3.3.1 ("neighborhood radius p = 3").
DEFAULT_P = 3
BOUNDARIES = ("clamp", "zero")


def temporal_neighbors(
    video: np.ndarray, frame: np.ndarray, p: int = DEFAULT_P, boundary: str = "clamp"
) -> np.ndarray:
    """``(N, 2p+1)`` item indices of frames ``k-p … k+p`` of each item's video.

    Column ``p + n`` holds the item showing frame ``frame[i] + n`` of video ``video[i]``; where
    the video has no such frame it holds the nearest existing frame (``"clamp"``) or −1
    (``"zero"``). Column ``p`` is the item itself.

    Raises:
        DataError: mismatched lengths, a negative ``p``, an unknown boundary rule, or a
            (video, frame) pair that occurs twice.
    """
    if boundary not in BOUNDARIES:
        raise DataError(f"unknown boundary rule {boundary!r}; choose one of {BOUNDARIES}")
    if p < 0:
        raise DataError(f"temporal radius p must be >= 0, got {p}")
    video = np.asarray(video, dtype=np.int64)
    frame = np.asarray(frame, dtype=np.int64)
    if video.shape != frame.shape or video.ndim != 1:
        raise DataError(
            f"video and frame must be equal-length 1-D arrays: {video.shape}, {frame.shape}"
        )
    n_items = len(video)
    out = np.empty((n_items, 2 * p + 1), dtype=np.int64)
    offsets = np.arange(-p, p + 1)
    order = np.lexsort((frame, video))
    _, starts = np.unique(video[order], return_index=True)
    ends = np.append(starts[1:], n_items)
    for s, e in zip(starts, ends, strict=True):
        members = order[s:e]  # this video's items sorted by frame
        f = frame[members]
        if len(np.unique(f)) != len(f):
            raise DataError(f"video {int(video[members[0]])}: a frame index occurs twice")
        target = f[:, None] + offsets[None, :]
        pos = np.searchsorted(f, target)  # first frame >= target
        pos_c = np.clip(pos, 0, len(f) - 1)
        exact = f[pos_c] == target
        if boundary == "zero":
            out[members] = np.where(exact, members[pos_c], -1)
        else:
            below = np.clip(pos - 1, 0, len(f) - 1)
            # nearest existing frame; the earlier one on a tie
            take_below = (~exact) & (
                (pos >= len(f)) | (np.abs(target - f[below]) <= np.abs(f[pos_c] - target))
            )
            out[members] = members[np.where(take_below, below, pos_c)]
    return out


def _prepare(emb: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.ascontiguousarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"embeddings must be (N, d), got shape {x.shape}")
    return l2_normalize(x) if normalize else x


def _neighbors_for(
    n: int,
    video: np.ndarray | None,
    frame: np.ndarray | None,
    p: int,
    boundary: str,
    neighbors: np.ndarray | None,
) -> np.ndarray:
    if neighbors is None:
        if video is None or frame is None:
            raise DataError("LTP needs video and frame arrays (or a precomputed neighbour table)")
        neighbors = temporal_neighbors(video, frame, p, boundary)
    neighbors = np.asarray(neighbors, dtype=np.int64)
    if neighbors.ndim != 2 or len(neighbors) != n or neighbors.shape[1] % 2 != 1:
        raise DataError(f"neighbour table of shape {neighbors.shape} does not fit {n} items")
    return neighbors


def ltp_stack(
    emb: np.ndarray,
    video: np.ndarray | None = None,
    frame: np.ndarray | None = None,
    p: int = DEFAULT_P,
    boundary: str = "clamp",
    normalize: bool = True,
    neighbors: np.ndarray | None = None,
) -> np.ndarray:
    """Stacked embeddings Φ ``(N, (2p+1)·d)`` whose inner products are the LTP similarities.

    ``Φ_iᵀΦ_j`` equals Eq. 3.9 for every pair (see the module docstring). With ``normalize``
    (default) the rows of ``emb`` are L2-normalised first, so φ'ᵀφ' is the cosine similarity the
    rest of the library ranks by; under ``"clamp"`` the rows of Φ then have unit norm.
    ``neighbors`` (from :func:`temporal_neighbors`) replaces ``video``/``frame``/``p``/``boundary``.
    """
    x = _prepare(emb, normalize)
    nb = _neighbors_for(len(x), video, frame, p, boundary, neighbors)
    width = nb.shape[1]
    padded = np.vstack([x, np.zeros((1, x.shape[1]), dtype=np.float32)])  # row -1 = zeros
    stacked = padded[nb]  # (N, 2p+1, d); index -1 is the zero row
    return np.ascontiguousarray(stacked.reshape(len(x), -1) / np.sqrt(width), dtype=np.float32)


def ltp_pair_similarity(
    emb: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    video: np.ndarray | None = None,
    frame: np.ndarray | None = None,
    p: int = DEFAULT_P,
    boundary: str = "clamp",
    normalize: bool = True,
    neighbors: np.ndarray | None = None,
) -> np.ndarray:
    """Pooled similarities ``s'`` (Eq. 3.9) of the pairs ``(i[t], j[t])``, shape ``(P,)``.

    For kNN neighbourhoods pass ``i`` repeated and ``j`` the neighbours (flattened); the cost is
    ``O(P·(2p+1)·d)`` and nothing of size N × N is built.
    """
    x = _prepare(emb, normalize)
    nb = _neighbors_for(len(x), video, frame, p, boundary, neighbors)
    i = np.asarray(i, dtype=np.int64).ravel()
    j = np.asarray(j, dtype=np.int64).ravel()
    if i.shape != j.shape:
        raise DataError(f"pair index arrays differ in length: {i.shape} vs {j.shape}")
    padded = np.vstack([x, np.zeros((1, x.shape[1]), dtype=np.float32)])
    total = np.zeros(len(i), dtype=np.float64)
    for col in range(nb.shape[1]):
        a = padded[nb[i, col]]
        b = padded[nb[j, col]]
        total += np.einsum("pd,pd->p", a, b, dtype=np.float64)
    return (total / nb.shape[1]).astype(np.float32)


def ltp_similarity_matrix(
    emb: np.ndarray,
    video: np.ndarray | None = None,
    frame: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    p: int = DEFAULT_P,
    boundary: str = "clamp",
    normalize: bool = True,
    neighbors: np.ndarray | None = None,
) -> np.ndarray:
    """Pooled similarities of ``rows`` (default: all items) to every item, ``(R, N)`` float32.

    O(R·N) memory: meant for query rows or small collections; use :func:`ltp_stack` with a kNN
    index for large N.
    """
    phi = ltp_stack(emb, video, frame, p, boundary, normalize, neighbors)
    q = phi if rows is None else phi[np.asarray(rows, dtype=np.int64)]
    return q @ phi.T
