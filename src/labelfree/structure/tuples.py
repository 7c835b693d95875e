"""Sampling of (anchor, positive, negative) tuples and their grouping into batches."""

from __future__ import annotations

from typing import Any

import numpy as np


def random_non_neighbours(
    anchors: np.ndarray, neighbours: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """For each anchor, a uniformly random item that is neither the anchor nor in its row of
    ``neighbours`` (an ``(N, k)`` table). Rejection sampling; needs ``n_items > k + 1``."""
    if n_items <= neighbours.shape[1] + 1:
        raise ValueError(f"{n_items} items leave no non-neighbour for k = {neighbours.shape[1]}")
    neg = rng.integers(0, n_items, size=len(anchors))
    for _ in range(1000):
        bad = (neg == anchors) | (neighbours[anchors] == neg[:, None]).any(axis=1)
        if not bad.any():
            return neg
        neg[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    raise RuntimeError("could not draw non-neighbours")  # practically unreachable


def tuple_batches(
    anchors: np.ndarray,
    positives: np.ndarray,
    negatives: np.ndarray,
    batch_size: int,
    weights: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Group tuples into batches of ``batch_size`` tuples.

    Each batch lists the distinct items to embed (``indices``) and, for every tuple, the
    positions of its anchor, positive and negative in that list (``a``, ``p``, ``n``), so an item
    shared by several tuples is embedded once.
    """
    out = []
    for s in range(0, len(anchors), batch_size):
        sl = slice(s, s + batch_size)
        items, inv = np.unique(
            np.concatenate([anchors[sl], positives[sl], negatives[sl]]), return_inverse=True
        )
        m = len(anchors[sl])
        batch = {"indices": items, "a": inv[:m], "p": inv[m : 2 * m], "n": inv[2 * m :]}
        if weights is not None:
            batch["w"] = weights[sl]
        out.append(batch)
    return out
