"""High-confidence relative orders from k-means cores (ROUL, seed 003 §3.1, Eqs. 1-4).

The structure step of ROUL: k-means on the current embedding, the cluster *cores*
Ω_m = {X : d(X, C_m) ≤ Δ} (Eq. 2, Δ = a fraction of the smallest distance between two centres),
and, for an anchor A in a core, comparison sets made of A's own augmentations, items of A's core
and items of other cores. Their ternary order matrix O_A ∈ {+1, 0, −1}^{N×N} (Eq. 1) follows the
paper's observations:

- an augmentation of A is closer to A than an item of another core: +1 (Eq. 3);
- an item of A's core is closer to A than an item of another core: +1 (Eq. 4);
- two augmentations of A, or two items of A's core: 0 (uncertain);
- everything else (two items of other cores, items outside every core): 0.

The paper states no rule for an augmentation of A against another item of A's core; it is 0 here
by default (``aug_vs_core``), i.e. "uncertain" — the paper only claims high confidence for the
pairs above. O is anti-symmetric by construction: O(n, m) = −O(m, n).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.graph.nn import kmeans

#: Roles of comparison items, ordered from closest to farthest to the anchor.
AUG, SAME_CORE, OTHER_CORE, UNKNOWN = 0, 1, 2, -1


def kmeans_cores(
    x: np.ndarray,
    k: int,
    core_fraction: float = 1.0 / 3.0,
    niter: int = 25,
    seed: int = 0,
    min_share: float = 0.0,
) -> dict[str, Any]:
    """k-means (faiss) on ``x`` and the cluster cores of seed 003 Eq. 2.

    Returns ``centres`` (k, d), ``assign`` (N,) nearest centre, ``core`` (N,) the core an item
    belongs to or −1, ``delta`` (the radius Δ = ``core_fraction`` × min distance between centres)
    and ``dist`` (N,) each item's Euclidean distance to its centre. With ``core_fraction`` < ½
    the cores are disjoint (an item within Δ of a centre is nearer to it than to any other).

    ``min_share`` > 0 tops each core up to the ⌈min_share · |cluster|⌉ members of its cluster
    nearest the centre (cores stay disjoint: only the cluster's own members are added). The
    literal Eq. 2 rule empties every core in high dimension — on mnist5k HOG-LDA (576-d, 42
    clusters) items lie 0.7-0.9 from their centre while centres are 0.39 apart, so Δ = 0.13 holds
    no item; ``literal_core_items`` in the result counts the items Eq. 2 alone selects.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if k < 2 or n < k:
        raise DataError(f"k-means with k = {k} needs at least k ≥ 2 and {k} items (got {n})")
    km = kmeans(x, k, niter=niter, seed=seed)
    centres, assign = km.centroids, km.assign
    dist = np.sqrt(np.maximum(km.dist, 0.0))
    cc = ((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(cc, np.inf)
    delta = float(core_fraction * np.sqrt(max(cc.min(), 0.0)))
    core = np.where(dist <= delta, assign, -1)
    n_literal = int((core >= 0).sum())
    if min_share > 0:
        # Top up each core to its cluster's ⌈min_share·size⌉ members nearest the centre.
        for c in range(k):
            members = np.flatnonzero(assign == c)
            need = math.ceil(min_share * len(members))
            if need and (core[members] >= 0).sum() < need:
                core[members[np.argsort(dist[members], kind="stable")[:need]]] = c
    return {
        "centres": centres,
        "assign": assign,
        "core": core,
        "delta": delta,
        "dist": dist,
        "literal_core_items": n_literal,
    }


def order_matrix(roles: np.ndarray, aug_vs_core: int = 0) -> np.ndarray:
    """The ternary order matrix O_A (seed 003 Eq. 1) of one anchor's comparison items.

    ``roles[n]`` is :data:`AUG` (an augmentation of A), :data:`SAME_CORE` (an item of A's core),
    :data:`OTHER_CORE` (an item of another core) or :data:`UNKNOWN`. O(n, m) = +1 when C_n is
    closer to A than C_m with high confidence (Eqs. 3-4), −1 for the reverse, 0 otherwise; the
    augmentation-vs-own-core pair is ``aug_vs_core`` (0: the paper gives no rule).
    """
    roles = np.asarray(roles)
    n = len(roles)
    o = np.zeros((n, n), dtype=np.int8)
    aug, same, other = roles == AUG, roles == SAME_CORE, roles == OTHER_CORE
    o[np.ix_(aug, other)] = 1  # Eq. 3
    o[np.ix_(same, other)] = 1  # Eq. 4
    if aug_vs_core:
        o[np.ix_(aug, same)] = int(np.sign(aug_vs_core))
    o = o - o.T  # anti-symmetric: O(m, n) = −O(n, m)
    return o.astype(np.int8)


def core_members(core: np.ndarray) -> dict[int, np.ndarray]:
    """Indices of each non-empty core."""
    out: dict[int, np.ndarray] = {}
    idx = np.flatnonzero(core >= 0)
    for c in np.unique(core[idx]):
        out[int(c)] = idx[core[idx] == c]
    return out


def sample_groups(
    core: np.ndarray,
    n_groups: int,
    n_aug: int,
    n_same: int,
    n_other: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_groups`` anchors from the cores (of at least 2 items) and their comparison sets.

    Each group's items are ``[A, A (×n_aug), B_1..B_n_same, C_1..C_n_other]``: the anchor, copies of
    its index (each view is augmented independently by the training loop), items of A's core
    (drawn with replacement when the core is small) and items of other cores. Returns the
    ``(n_groups, 1 + N)`` index array and the ``(N,)`` roles of the comparison items (the same for
    every group).
    """
    members = core_members(core)
    anchor_cores = [c for c, m in members.items() if len(m) >= 2]
    if not anchor_cores or len(members) < 2:
        raise DataError(
            f"ROUL needs at least 2 non-empty cores, one with ≥ 2 items (got {len(members)} "
            "cores); lower `clusters` or raise `core_fraction`"
        )
    pool = np.concatenate([members[c] for c in anchor_cores])
    anchors = rng.choice(pool, size=n_groups, replace=len(pool) < n_groups)
    in_core = np.flatnonzero(core >= 0)
    groups = np.empty((n_groups, 1 + n_aug + n_same + n_other), dtype=np.int64)
    for g, a in enumerate(anchors):
        m = core[a]
        same = members[m][members[m] != a]
        b = rng.choice(same, size=n_same, replace=len(same) < n_same)
        others = in_core[core[in_core] != m]
        c = rng.choice(others, size=n_other, replace=len(others) < n_other)
        groups[g] = np.concatenate([[a], np.full(n_aug, a), b, c])
    roles = np.array([AUG] * n_aug + [SAME_CORE] * n_same + [OTHER_CORE] * n_other)
    return groups, roles


def core_purity(core: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Coverage and purity of cluster cores (ROUL's structure, seed 003 §3.1), a diagnostic
    against evaluation labels: P(same label) for two items of one core (the premise of the +1 /
    0 pairs) and P(different label) for items of two different cores."""
    core = np.asarray(core)
    inc = core >= 0
    if inc.sum() < 2:
        return {"core_coverage": float(inc.mean())}
    cl = np.unique(labels)
    hist = np.stack(
        [
            np.bincount(np.searchsorted(cl, labels[inc & (core == c)]), minlength=len(cl))
            for c in np.unique(core[inc])
        ]
    ).astype(float)
    sizes = hist.sum(1)
    same_pairs = (hist * (hist - 1)).sum()
    all_same_core = (sizes * (sizes - 1)).sum()
    tot = hist.sum(0)
    cross_same = (tot**2 - (hist**2).sum(0)).sum()
    cross_all = sizes.sum() ** 2 - (sizes**2).sum()
    return {
        "core_coverage": float(inc.mean()),
        "n_cores": float(len(sizes)),
        "positive_tp_rate": float(same_pairs / max(all_same_core, 1)),
        "negative_tn_rate": float(1 - cross_same / max(cross_all, 1)),
    }
