"""The classes Divide & Conquer's batches are built from (seed 001 Ch.2; METHODS.md §5): the
training labels (the thesis's supervised setting) or label-free pseudo-classes from a structure
step on g(x) — k-means clusters, CliqueCNN's compact cliques or MoM's positive pools."""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.graph.knn import l2_normalize
from labelfree.graph.nn import kmeans
from labelfree.structure.cliques import build_cliques
from labelfree.structure.partition import pools_to_classes, pseudo_class_count

TARGETS = ("kmeans", "cliques", "pools", "labels")


def pseudo_targets(
    kind: str,
    g: np.ndarray,
    labels: np.ndarray | None,
    n_pseudo: int | None,
    k_clique: int,
    seed: int,
) -> np.ndarray:
    """(N,) class of each training item, −1 for an item no class holds (never drawn).

    ``kmeans``: k-means of L2-normalised g(x) into ``n_pseudo`` (default N/30) clusters.
    ``cliques``: CliqueCNN's compact cliques grown in ``k_clique`` neighbourhoods, an item in
    several going to the most compact (seed 001 §3.2.2). ``pools``: MoM's structure step with
    its defaults and ``n_pseudo`` graph modes as anchors; each anchor with its P⁺ pool is a
    class, an item in several pools joining the most similar anchor (seed 002 §3.3).
    """
    if kind == "labels":
        if labels is None:
            raise DataError("option targets=labels needs labelled training data")
        return np.asarray(labels, np.int64)
    n, x = len(g), l2_normalize(g)
    k = min(n_pseudo or pseudo_class_count(n), n)
    if kind == "kmeans":
        return kmeans(x, k, niter=25, seed=seed).assign
    if kind == "cliques":
        cliques = build_cliques(x, min(k_clique, n - 1), "dot", min_size=2)
        if len(cliques) < 2:
            raise DataError(
                f"option targets=cliques: only {len(cliques)} clique(s) of >= 2 items; "
                "raise -o k_clique or use targets=kmeans"
            )
        return cliques.labels(x, "dot")
    if kind == "pools":
        from labelfree.methods.mom import MoM  # a method's structure step, composed

        s = MoM(anchors="modes", n_anchors=k).structure(g, 0)
        return pools_to_classes(s.anchors, s.pos, s.pos_len, x)
    raise ValueError(f"unknown targets {kind!r}; choose one of {', '.join(TARGETS)}")
