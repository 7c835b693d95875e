"""k-nearest-neighbour search with faiss (exact, cosine on L2-normalised rows).

Cost: exact search is O(N²·d) time and O(N·k) memory (faiss processes queries in blocks, so no
N×N matrix is ever held).
"""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.graph.nn import build_index, drop_self, search


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32, contiguous); all-zero rows stay zero."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def knn(
    x: np.ndarray, k: int, queries: np.ndarray | None = None, exclude_self: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most cosine-similar rows of ``x`` for each query (default: each row of ``x``).

    Returns ``(similarities, indices)``, both ``(Q, k)``, most similar first. With
    ``exclude_self`` (only meaningful when ``queries`` is None) an item is never its own neighbour.
    Raises :class:`DataError` when ``x`` has too few rows for ``k``.
    """
    n = len(x)
    need = k + 1 if (exclude_self and queries is None) else k
    if n < need:
        raise DataError(f"{n} items are too few for k = {k} nearest neighbours (need {need})")
    xb = l2_normalize(x)
    xq = xb if queries is None else l2_normalize(queries)
    index = build_index(xb, "flat")
    if queries is not None or not exclude_self:
        return search(index, xq, k)
    return drop_self(*search(index, xq, k + 1))
