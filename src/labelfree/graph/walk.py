"""Random walk on the mutual kNN graph: stationary distribution and its modes (seed 002 §3.3).

The modes (local maxima of π) are the anchor candidates of MoM mining.

Cost model (N nodes, E = stored entries of the graph): :func:`stationary_distribution` O(E) per
power iteration, O(N) memory; :func:`graph_modes` O(E).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from labelfree.graph.mutual import check_anchors, check_square


def stationary_distribution(
    a: sp.spmatrix,
    tol: float = 1e-10,
    maxiter: int = 1000,
    nodes: np.ndarray | None = None,
) -> np.ndarray:
    """Stationary distribution π of the random walk P = D⁻¹A by power iteration (seed 002 §3.3).

    Iterates the lazy walk π ← ½(π + πP), whose stationary distributions are those of P but
    which also converges on periodic (bipartite) graphs, from the uniform distribution over the
    nodes considered, until the L1 change is below ``tol``. Isolated nodes (degree 0) have no
    walk and get π = 0. With ``nodes`` (e.g. :func:`largest_component`, as the authors' code
    does) the walk is restricted to the subgraph they induce and π is 0 elsewhere.

    On a connected undirected graph the answer is π_i = d_i / Σ_j d_j. On a disconnected one π
    is not unique; the uniform start gives each component the share of nodes it holds, and
    π_i ∝ d_i within it.

    Returns:
        ``(N,)`` float64, non-negative, summing to 1 (all zeros when no node has an edge).
        Warns (RuntimeWarning) when ``maxiter`` is reached first.
    """
    a = check_square(a)
    n = a.shape[0]
    if nodes is not None:
        nodes = check_anchors(nodes, n)
        mask = np.zeros(n, dtype=bool)
        mask[nodes] = True
        sel = sp.diags(mask.astype(np.float64))
        a = (sel @ a @ sel).tocsr()
    a = a.astype(np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    live = deg > 0
    pi = np.zeros(n)
    if not live.any():
        return pi
    pi[live] = 1.0 / live.sum()
    inv_deg = np.zeros(n)
    inv_deg[live] = 1.0 / deg[live]
    at = a.T.tocsr()  # πP = Aᵀ(π / d) as a column vector
    for _ in range(maxiter):
        new = 0.5 * (pi + at @ (pi * inv_deg))
        new /= new.sum()
        change = np.abs(new - pi).sum()
        pi = new
        if change < tol:
            break
    else:
        warnings.warn(
            f"stationary distribution: power iteration stopped at maxiter={maxiter} with L1 "
            f"change {change:.2e} > tol={tol:.0e}",
            RuntimeWarning,
            stacklevel=2,
        )
    return pi


def graph_modes(a: sp.spmatrix, pi: np.ndarray, top_m: int | None = None) -> np.ndarray:
    """Local maxima of π on the graph: the anchor candidates of seed 002 §3.3.

    Node i is a mode when π_i ≥ π_j for every neighbour j (ties make both modes) and π_i > 0
    (isolated or excluded nodes are never modes). Returns their indices by decreasing π (ties by
    index), the first ``top_m`` when given.
    """
    a = check_square(a)
    pi = np.asarray(pi, dtype=np.float64)
    n = a.shape[0]
    if pi.shape != (n,):
        raise ValueError(f"pi must have shape ({n},), got {pi.shape}")
    a = a.copy()
    a.eliminate_zeros()
    counts = np.diff(a.indptr)
    nbr_max = np.full(n, -np.inf)
    rows = np.flatnonzero(counts)
    if rows.size:
        # reduceat over the non-empty rows' segments (empty rows in between add no elements)
        nbr_max[rows] = np.maximum.reduceat(pi[a.indices], a.indptr[rows])
    modes = np.flatnonzero((pi >= nbr_max) & (pi > 0))
    modes = modes[np.lexsort((modes, -pi[modes]))]
    return modes if top_m is None else modes[:top_m]
