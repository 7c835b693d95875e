"""Compact cliques on sparse kNN similarities (CliqueCNN, seed 001 §3.2.2; Posets grouping, seed 000 §3).

Both methods group items into small sets whose members are *all* mutually similar:

1. Similarities are only computed inside each item's kNN neighbourhood (faiss), chunk by chunk,
   so N = 10⁵ items never materialise an N×N matrix. Two kinds (METHODS.md §2.1, §3.1):
   ``dot`` s_ij = φ_iᵀφ_j (HOG-LDA dot product, CliqueCNN) and ``expdist``
   s_ij = exp(−‖φ_i − φ_j‖) (Posets); φ is L2-normalised first.
2. Growth (complete linkage): from each seed x_i, the candidate of its neighbourhood whose
   *smallest* similarity to the members so far is largest joins, as long as that smallest
   similarity is at least the seed's threshold τ_i. Every pair of a clique is therefore above
   τ_i — a clique, never a chain (the authors' released code grows by maximum similarity and
   can chain; METHODS.md §2.2 says not to copy that). Our choice for τ_i, which the sources
   leave open: the similarity of the seed to its k-th neighbour, i.e. members must be at least
   as similar to each other as the seed is to the edge of its neighbourhood (the "extremes of
   each row are trusted" of seed 001 §3.2.1, with a local scale).
3. Merging: duplicate cliques are dropped; overlapping cliques are agglomerated by farthest
   neighbour (complete linkage). A merge of A and B is accepted only if every cross pair is
   at least min(τ_A, τ_B) (so the union is still a clique, with that threshold) and the
   union's intra-clique similarity (mean over distinct pairs) is at least half the mean of the
   constituents' — seed 001: "terminated if the intra-clique similarity of a cluster is less
   than half that of its constituents" ("that of its constituents" read as their average; our
   choice). Candidate pairs are visited by decreasing overlap fraction, a single Kruskal-style pass with union-find, which keeps the cost near-linear in the number of
   overlapping pairs.
4. The assignment matrix C ∈ {0,1}^{K×N} (sparse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from labelfree.graph.knn import knn, l2_normalize

KINDS = ("dot", "expdist")


def pair_similarity(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """Similarities between the L2-normalised rows of ``a`` (…, m, d) and ``b`` (…, n, d)."""
    dots = a @ np.swapaxes(b, -1, -2)
    if kind == "dot":
        return dots
    if kind == "expdist":
        return np.exp(-np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0)))
    raise ValueError(f"unknown similarity {kind!r}; choose one of {', '.join(KINDS)}")


def intra_similarity(x: np.ndarray, members: np.ndarray, kind: str) -> float:
    """Mean similarity over the distinct pairs of ``members`` (rows of normalised ``x``)."""
    m = len(members)
    if m < 2:
        return float("nan")
    s = pair_similarity(x[members], x[members], kind)
    return float((s.sum() - np.trace(s)) / (m * (m - 1)))


@dataclass
class Cliques:
    """Compact cliques: ``members[k]`` (sorted item indices) and their thresholds τ_k."""

    members: list[np.ndarray]
    thresholds: np.ndarray
    n_items: int
    merges: list[tuple[float, float, float]] = field(default_factory=list)
    """Each accepted merge: (intra of A, intra of B, intra of A∪B)."""

    def __len__(self) -> int:
        return len(self.members)

    def assignment(self) -> sp.csr_matrix:
        """C ∈ {0,1}^{K×N}: C[k, i] = 1 when item i belongs to clique k."""
        return assignment_matrix(self.members, self.n_items)

    def labels(self, x: np.ndarray, kind: str) -> np.ndarray:
        """A partition: each item's clique, −1 for items in none. An item in several cliques
        goes to the most compact (highest intra-similarity) one — our choice."""
        intra = np.array([intra_similarity(x, m, kind) for m in self.members])
        y = np.full(self.n_items, -1, dtype=np.int64)
        for k in np.argsort(-intra, kind="stable"):
            free = self.members[k][y[self.members[k]] < 0]
            y[free] = k
        return y


def assignment_matrix(members: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(members)), [len(m) for m in members])
    cols = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    data = np.ones(len(cols), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(members), n_items))


def grow_cliques(
    x: np.ndarray, k: int, kind: str = "dot", chunk: int = 4096
) -> tuple[list[np.ndarray], np.ndarray]:
    """Complete-linkage growth from every seed inside its ``k``-NN neighbourhood.

    Returns one clique per seed (sorted member indices, the seed included) and the thresholds
    τ_i = s(seed, its k-th neighbour). Cost O(N·k²·d) time, O(chunk·k²) memory.
    """
    x = l2_normalize(x)
    n = len(x)
    k = min(k, n - 1)
    _, nn = knn(x, k)
    cliques: list[np.ndarray] = []
    taus = np.empty(n, dtype=np.float64)
    for s0 in range(0, n, chunk):
        seeds = np.arange(s0, min(s0 + chunk, n))
        hood = np.concatenate([seeds[:, None], nn[seeds]], axis=1)  # (c, k+1), seed first
        feats = x[hood]
        local = pair_similarity(feats, feats, kind).astype(np.float64)  # (c, k+1, k+1)
        c, m = hood.shape
        rows = np.arange(c)
        tau = local[:, 0, -1].copy()
        member = np.zeros((c, m), dtype=bool)
        member[:, 0] = True
        minsim = local[:, 0, :].copy()
        active = np.ones(c, dtype=bool)
        for _ in range(m - 1):
            cand = np.where(member, -np.inf, minsim)
            j = cand.argmax(axis=1)
            ok = active & (cand[rows, j] >= tau)
            if not ok.any():
                break
            member[rows[ok], j[ok]] = True
            minsim[ok] = np.minimum(minsim[ok], local[rows[ok], j[ok], :])
            active = ok
        taus[seeds] = tau
        for i in range(c):
            cliques.append(np.unique(hood[i, member[i]]))
    return cliques, taus


def merge_cliques(
    x: np.ndarray,
    cliques: list[np.ndarray],
    thresholds: np.ndarray,
    kind: str = "dot",
    min_overlap: float = 0.5,
    max_size: int | None = None,
) -> Cliques:
    """Farthest-neighbour agglomeration of overlapping cliques with the half-intra stopping rule.

    Two cliques are candidates when they share at least ``min_overlap`` of the smaller one
    ("highly overlapping", seed 001 §3.2.2). See the module docstring for the acceptance rule.
    ``max_size`` caps a merged clique (None: no cap).
    """
    x = l2_normalize(x)
    n = len(x)
    # Drop duplicates, keep the loosest threshold a duplicate came with (all its pairs pass it).
    uniq: dict[bytes, int] = {}
    members: list[np.ndarray] = []
    taus: list[float] = []
    for m, t in zip(cliques, thresholds, strict=True):
        key = m.astype(np.int64).tobytes()
        if key in uniq:
            taus[uniq[key]] = min(taus[uniq[key]], float(t))
        else:
            uniq[key] = len(members)
            members.append(m)
            taus.append(float(t))
    kcount = len(members)
    intra = np.array([intra_similarity(x, m, kind) for m in members])
    sizes = np.array([len(m) for m in members])
    C = assignment_matrix(members, n)
    overlap = sp.triu(C @ C.T, k=1).tocoo()
    frac = overlap.data / np.minimum(sizes[overlap.row], sizes[overlap.col])
    keep = (frac >= min_overlap) & (sizes[overlap.row] > 1) & (sizes[overlap.col] > 1)
    a, b, frac = overlap.row[keep], overlap.col[keep], frac[keep]
    order = np.argsort(-frac, kind="stable")
    parent = np.arange(kcount)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Python sets: members are small, and set algebra on them is far cheaper than numpy's.
    cur_members: dict[int, frozenset[int]] = {
        i: frozenset(members[i].tolist()) for i in range(kcount)
    }
    cur_tau = np.asarray(taus, dtype=np.float64)
    cur_intra = intra.copy()
    merges: list[tuple[float, float, float]] = []
    for e in order:
        ra, rb = find(int(a[e])), find(int(b[e]))
        if ra == rb:
            continue
        union = cur_members[ra] | cur_members[rb]
        m = len(union)
        if max_size is not None and m > max_size:
            continue
        idx = np.fromiter(union, dtype=np.int64, count=m)
        sims = pair_similarity(x[idx], x[idx], kind)
        np.fill_diagonal(sims, np.inf)
        # Farthest-neighbour linkage: every pair of the union (pairs inside A or B are already
        # above their own, larger-or-equal threshold) must reach min(τ_A, τ_B).
        tau = min(cur_tau[ra], cur_tau[rb])
        if sims.min() < tau:
            continue
        np.fill_diagonal(sims, 0.0)
        new_intra = float(sims.sum() / (m * (m - 1)))
        if new_intra < 0.5 * 0.5 * (cur_intra[ra] + cur_intra[rb]):
            continue  # the half-intra stopping rule
        merges.append((float(cur_intra[ra]), float(cur_intra[rb]), new_intra))
        parent[rb] = ra
        cur_members[ra] = union
        cur_tau[ra] = tau
        cur_intra[ra] = new_intra
        del cur_members[rb]
    roots = sorted(cur_members)
    final = [np.array(sorted(cur_members[r]), dtype=np.int64) for r in roots]
    # Identical unions can arise from different roots; drop them again.
    seen: set[bytes] = set()
    out_m, out_t = [], []
    for r, m in zip(roots, final, strict=True):
        key = m.astype(np.int64).tobytes()
        if key not in seen:
            seen.add(key)
            out_m.append(m)
            out_t.append(cur_tau[r])
    return Cliques(out_m, np.asarray(out_t), n, merges)


def build_cliques(
    x: np.ndarray,
    k: int,
    kind: str = "dot",
    min_size: int = 2,
    merge: bool = True,
    min_overlap: float = 0.5,
    max_size: int | None = None,
) -> Cliques:
    """Grow a clique from every item, merge overlapping ones, keep those of ≥ ``min_size``."""
    grown, taus = grow_cliques(x, k, kind)
    if merge:
        cl = merge_cliques(x, grown, taus, kind, min_overlap=min_overlap, max_size=max_size)
    else:
        cl = Cliques(grown, taus, len(x))
    keep = [i for i, m in enumerate(cl.members) if len(m) >= min_size]
    return Cliques([cl.members[i] for i in keep], cl.thresholds[keep], len(x), cl.merges)
