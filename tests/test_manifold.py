"""Mutual kNN graph, manifold similarity, random walk, modes and MoM pools (seed 002 §3)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from labelfree.data.imageset import DataError
from labelfree.graph import manifold as mf
from labelfree.graph.manifold import (
    block_cg,
    connected_components,
    diffusion_rerank,
    graph_modes,
    knn_graph,
    largest_component,
    manifold_similarity,
    mutual_knn_graph,
    normalize_graph,
    stationary_distribution,
)
from labelfree.structure.pools import (
    mine_pools,
    negative_pool,
    pool_rates,
    pool_size_rule,
    positive_pool,
)

ALPHA = 0.99


def clusters(n_clusters: int, per: int, d: int = 16, noise: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    x = centres[:, None, :] + noise * rng.normal(size=(n_clusters, per, d))
    return x.reshape(-1, d).astype(np.float32), np.repeat(np.arange(n_clusters), per)


def brute_mutual(x: np.ndarray, k: int, power: float = 3) -> np.ndarray:
    """Dense reference of seed 002 eq. (1)."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = z.astype(np.float64) @ z.T.astype(np.float64)
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :k]
    member = np.zeros_like(s, dtype=bool)
    member[np.arange(len(x))[:, None], nn] = True
    mutual = member & member.T
    np.fill_diagonal(s, 0)
    return np.where(mutual, np.maximum(s, 0) ** power, 0.0)


def dense_manifold(a_hat: sp.spmatrix, alpha: float = ALPHA) -> np.ndarray:
    n = a_hat.shape[0]
    return (1 - alpha) * np.linalg.inv(np.eye(n) - alpha * a_hat.toarray())


@pytest.fixture(scope="module")
def small_graph():
    """A connected mutual graph of 150 points (6 overlapping clusters), float64."""
    x, labels = clusters(6, 25, noise=0.8, seed=1)
    a = mutual_knn_graph(x, k=10).astype(np.float64)
    comp = largest_component(a)
    a = a[comp][:, comp].tocsr()
    assert connected_components(a)[0] == 1
    return x[comp], labels[comp], a


# ------------------------------------------------------------------------------ graph


def test_mutual_graph_equals_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6))
    a = mutual_knn_graph(x, k=7)
    ref = brute_mutual(x, 7)
    assert a.shape == (80, 80) and a.dtype == np.float32
    assert (a != a.T).nnz == 0
    assert np.all(a.diagonal() == 0)
    np.testing.assert_array_equal(a.toarray() > 0, ref > 0)
    np.testing.assert_allclose(a.toarray(), ref, rtol=1e-5, atol=1e-6)
    # Mutual: every stored edge is within both endpoints' 7 neighbours, so degree ≤ k.
    assert np.diff(a.indptr).max() <= 7


def test_mutual_graph_reuses_wider_neighbour_table():
    x, _ = clusters(4, 20, seed=2)
    wide = knn_graph(x, 15)
    a = mutual_knn_graph(None, k=6, neighbours=wide)
    b = mutual_knn_graph(x, k=6)
    assert abs(a - b).max() == 0


def test_negative_similarities_give_no_edge():
    x = np.array([[1.0, 0.0], [-1.0, 0.01], [0.9, 0.1], [-0.9, -0.1]])
    a = mutual_knn_graph(x, k=3)
    ref = brute_mutual(x, 3)
    np.testing.assert_allclose(a.toarray(), ref, atol=1e-6)
    assert a[0, 1] == 0 and a[0, 2] > 0


@pytest.mark.parametrize("method", ["hnsw", "ivf"])
def test_approximate_knn_graph(method):
    """What holds for any approximate search, and exactness once the index visits every item
    (HNSW search depth ≥ N on its connected base layer, IVF probing every list). Recall at the
    default depth is measured in benchmarks/bench_mining.py."""
    x, _ = clusters(20, 30, d=24, noise=0.5, seed=3)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    ex_s, ex_i = knn_graph(x, 10, approximate=False)
    sims, idx = knn_graph(x, 10, approximate=True, method=method)
    assert idx.shape == (600, 10) and (idx >= 0).all() and (idx < 600).all()
    assert not (idx == np.arange(600)[:, None]).any()
    assert all(len(set(row)) == 10 for row in idx.tolist())
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    # each similarity is the true cosine of its pair, and the j-th best of any 10 other items
    # is at most the j-th best of all of them
    np.testing.assert_allclose(sims, np.einsum("nd,nkd->nk", xn, xn[idx]), atol=1e-5)
    assert np.all(sims <= ex_s + 1e-5)
    full = {"hnsw": {"ef_search": 600}, "ivf": {"nlist": 8, "nprobe": 8}}[method]
    sims_full, idx_full = knn_graph(x, 10, approximate=True, method=method, **full)
    np.testing.assert_allclose(sims_full, ex_s, atol=1e-5)
    np.testing.assert_allclose(np.einsum("nd,nkd->nk", xn, xn[idx_full]), ex_s, atol=1e-5)


def test_knn_graph_rejects_too_few_items():
    with pytest.raises(DataError, match="too few"):
        knn_graph(np.zeros((5, 3)) + np.arange(5)[:, None], 5)


def test_normalize_graph_and_isolated_nodes():
    a = sp.csr_matrix(
        np.array([[0, 2, 0, 0], [2, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float64)
    )
    ah = normalize_graph(a).toarray()
    d = np.array([2, 3, 1, 0.0])
    expect = np.zeros((4, 4))
    nz = d > 0
    expect[np.ix_(nz, nz)] = a.toarray()[np.ix_(nz, nz)] / np.sqrt(np.outer(d[nz], d[nz]))
    np.testing.assert_allclose(ah, expect)
    assert np.isfinite(ah).all()
    n, labels = connected_components(a)
    assert n == 2 and labels[3] != labels[0]
    np.testing.assert_array_equal(largest_component(a), [0, 1, 2])


# ------------------------------------------------------------------------------ manifold


def test_manifold_similarity_matches_dense_inverse(small_graph):
    _, _, a = small_graph
    ah = normalize_graph(a)
    ref = dense_manifold(ah)
    anchors = np.array([0, 7, 33, 90, 120])
    f = manifold_similarity(ah, anchors, tol=1e-12, maxiter=1000, block=2)
    assert f.shape == (a.shape[0], 5)
    np.testing.assert_allclose(f, ref[:, anchors], atol=1e-5)
    # Symmetry of s_m (seed 002 §3.2): f_i(j) = f_j(i).
    assert abs(f[7, 0] - f[0, 1]) < 1e-6

    sims, idx = manifold_similarity(ah, anchors, tol=1e-12, maxiter=1000, topk=12, block=3)
    for r, i in enumerate(anchors):
        col = ref[:, i].copy()
        col[i] = -np.inf
        np.testing.assert_array_equal(idx[r], np.argsort(-col, kind="stable")[:12])
        np.testing.assert_allclose(sims[r], col[idx[r]], atol=1e-5)
        assert i not in idx[r]


def _cg_iterates(op, rhs: np.ndarray, rtol: float, maxiter: int) -> list[np.ndarray]:
    """Every iterate of scipy's CG from x₀ = 0 (float64)."""
    out: list[np.ndarray] = []
    cg(op, rhs, rtol=rtol, maxiter=maxiter, callback=lambda xk: out.append(xk.copy()))
    return out


def test_default_float32_cap_is_the_smallest_residual_cg_iterate(small_graph):
    """The default (float32, at most 20 CG iterations, the authors' cap) returns, per column,
    the CG iterate with the smallest residual (as the authors' solver does), not the last:
    checked against scipy's CG iterates in float64 (callback), on the columns whose best
    residual is clearly (> 2 %) below every other iterate's, so float32 rounding cannot swap
    the choice. How well that ranks like the converged solution: benchmarks/bench_mining.py."""
    _, _, a = small_graph
    n = a.shape[0]
    ah32 = normalize_graph(a.astype(np.float32))
    assert ah32.dtype == np.float32
    f = manifold_similarity(ah32, np.arange(20))
    assert f.dtype == np.float32
    op = sp.identity(n) - ALPHA * normalize_graph(a)
    checked = 0
    for i in range(20):
        rhs = np.zeros(n)
        rhs[i] = 1 - ALPHA
        iterates = _cg_iterates(op, rhs, rtol=1e-6, maxiter=20)
        res = np.array([np.linalg.norm(rhs - op @ x) for x in iterates])
        order = np.argsort(res)
        if len(res) > 1 and res[order[0]] > 0.98 * res[order[1]]:
            continue  # a near tie: float32 may pick either
        ref = iterates[order[0]]
        np.testing.assert_allclose(f[:, i], ref, atol=1e-3 * np.abs(ref).max())
        checked += 1
    assert checked >= 10, checked
    # the cap binds here: 20 iterations stop short of the exact solution
    exact = dense_manifold(normalize_graph(a))[:, :20]
    assert np.abs(f - exact).max() > 1e-3 * np.abs(exact).max()


def test_block_cg_returns_each_columns_smallest_residual_iterate():
    """On a 5-NN graph of 200 points at α = 0.99, CG's residual rises in the last iterations
    of several columns: each column returns its smallest-residual iterate (scipy's CG iterates
    in float64 as the reference), which for some columns is not the last one."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    nn = np.argsort(d2, axis=1)[:, 1:6]
    w = np.zeros((200, 200))
    w[np.repeat(np.arange(200), 5), nn.ravel()] = 1
    a = sp.csr_matrix(np.maximum(w, w.T))
    ah = normalize_graph(a)
    op = sp.identity(200) - ALPHA * ah
    rhs = np.eye(200)[:, :40]
    f, iters = block_cg(ah, rhs, alpha=ALPHA, tol=1e-14, maxiter=20)
    assert (iters == 20).all()
    not_last = 0
    for c in range(40):
        iterates = _cg_iterates(op, rhs[:, c], rtol=1e-14, maxiter=20)
        res = np.array([np.linalg.norm(rhs[:, c] - op @ v) for v in iterates])
        best = int(np.argmin(res))
        np.testing.assert_allclose(f[:, c], iterates[best], atol=1e-9)
        not_last += int(best != len(iterates) - 1)
    assert not_last >= 5, not_last


def test_block_cg_columns_match_scipy_cg_and_stop_independently(small_graph):
    _, _, a = small_graph
    n = a.shape[0]
    # Add an isolated node: its column converges after one step while others continue.
    a = sp.block_diag([a, sp.csr_matrix((1, 1))]).tocsr()
    ah = normalize_graph(a)
    rhs = np.zeros((n + 1, 3))
    rhs[[0, 50, n], [0, 1, 2]] = 1 - ALPHA
    f, iters = block_cg(ah, rhs, tol=1e-10, maxiter=300)
    op = sp.identity(n + 1) - ALPHA * ah
    for c in range(3):
        ref, info = cg(op, rhs[:, c], rtol=1e-12, maxiter=1000)
        assert info == 0
        np.testing.assert_allclose(f[:, c], ref, atol=1e-8)
    assert iters[2] == 1 and iters[0] > 10
    np.testing.assert_allclose(f[:, 2], rhs[:, 2])


def test_dense_result_is_refused_when_too_large(small_graph, monkeypatch):
    _, _, a = small_graph
    monkeypatch.setattr(mf, "MAX_DENSE_FLOATS", 100)
    with pytest.raises(ValueError, match="topk"):
        manifold_similarity(normalize_graph(a), [0, 1])
    sims, idx = manifold_similarity(normalize_graph(a), [0, 1], topk=5)  # fine with topk
    assert idx.shape == (2, 5)


def test_isolated_nodes_produce_no_nan():
    x, _ = clusters(3, 15, seed=4)
    a = mutual_knn_graph(x, k=5)
    a = sp.block_diag([a, sp.csr_matrix((2, 2), dtype=np.float32)]).tocsr()  # nodes 45, 46
    ah = normalize_graph(a)
    f = manifold_similarity(ah, [0, 45])
    assert np.isfinite(f).all()
    np.testing.assert_allclose(f[:, 1], (1 - ALPHA) * np.eye(47)[45], atol=1e-7)
    sims, idx = manifold_similarity(ah, [45, 3], topk=10)
    assert (idx[0] == -1).all() and (sims[0] == 0).all()
    assert (idx[1] >= 0).all() and np.isfinite(sims).all()
    pi = stationary_distribution(a)
    assert np.isfinite(pi).all() and pi[45] == 0 and pi[46] == 0
    assert 45 not in graph_modes(a, pi)


def test_other_components_are_not_manifold_neighbours():
    x, _ = clusters(2, 12, noise=0.05, seed=5)
    a = mutual_knn_graph(x, k=5)
    n, labels = connected_components(a)
    assert n == 2
    sims, idx = manifold_similarity(normalize_graph(a), [0], topk=20, maxiter=100)
    reached = idx[0][idx[0] >= 0]
    assert len(reached) == 11 and (labels[reached] == labels[0]).all()
    assert (idx[0][11:] == -1).all()


def test_degree_normalised_ranking(small_graph):
    _, _, a = small_graph
    ah = normalize_graph(a)
    deg = np.asarray(a.sum(axis=1)).ravel()
    ref = dense_manifold(ah)[:, [4, 9]]
    f = manifold_similarity(ah, [4, 9], tol=1e-12, maxiter=1000, degrees=deg)
    expect = ref * deg.sum() / np.sqrt(np.outer(deg, deg[[4, 9]]))
    np.testing.assert_allclose(f, expect, rtol=1e-5)


# ------------------------------------------------------------------------------ diffusion


def test_diffusion_rerank_of_a_db_item_ranks_like_manifold_similarity(small_graph):
    x, _, _ = small_graph
    a = mutual_knn_graph(x, k=10).astype(np.float64)
    ah = normalize_graph(a)
    items = np.array([3, 40])
    _, ref = manifold_similarity(ah, items, topk=30, tol=1e-12, maxiter=500)
    # A query identical to item i linked to its single nearest db item (itself): y = e_i.
    scores, idx = diffusion_rerank(
        x, x[items], k=10, topk=31, graph=a, query_k=1, tol=1e-12, maxiter=500
    )
    np.testing.assert_array_equal(idx[:, 0], items)  # the item itself first
    np.testing.assert_array_equal(idx[:, 1:], ref)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Every item querying its own set: same as manifold_similarity, itself excluded.
    s_all, i_all = diffusion_rerank(x, None, k=10, topk=30, graph=a, tol=1e-12, maxiter=500)
    np.testing.assert_array_equal(i_all[items], ref)
    assert not (i_all == np.arange(len(x))[:, None]).any()
    # Default linking: y_j = [qᵀx_j]₊³ on the query's k = 10 nearest db items (the item itself
    # among them), and f = (1 − α)(I − αÂ)⁻¹y, the same combination of the dense inverse's
    # columns.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = xn[items].astype(np.float64) @ xn.T.astype(np.float64)
    y = np.zeros_like(cos)
    for r in range(len(items)):
        near = np.argsort(-cos[r])[:10]
        y[r, near] = np.maximum(cos[r, near], 0) ** 3
    want = y @ dense_manifold(ah)  # (1 − α)(I − αÂ)⁻¹ is symmetric
    s_k, idx_k = diffusion_rerank(x, x[items], k=10, topk=10, graph=a, tol=1e-12, maxiter=500)
    for r in range(len(items)):
        np.testing.assert_array_equal(idx_k[r], np.argsort(-want[r], kind="stable")[:10])
        np.testing.assert_allclose(s_k[r], want[r, idx_k[r]], rtol=1e-5)


# ------------------------------------------------------------------------------ random walk


def test_stationary_distribution_connected(small_graph):
    _, _, a = small_graph
    # Six overlapping clusters mix slowly: the lazy walk needs a few thousand steps here.
    pi = stationary_distribution(a, maxiter=20000)
    deg = np.asarray(a.sum(axis=1)).ravel()
    np.testing.assert_allclose(pi, deg / deg.sum(), atol=1e-8)
    p = sp.diags(1 / deg) @ a
    np.testing.assert_allclose(p.T @ pi, pi, atol=1e-10)
    with pytest.warns(RuntimeWarning, match="maxiter"):
        stationary_distribution(a, maxiter=5)
    assert pi.min() >= 0 and abs(pi.sum() - 1) < 1e-12


def test_stationary_distribution_bipartite():
    # A weighted path 0-1-2-3-4 plus a star: bipartite, so the plain walk is periodic.
    rows = [0, 1, 2, 3, 5, 5, 5]
    cols = [1, 2, 3, 4, 6, 7, 8]
    w = [1.0, 2.0, 0.5, 3.0, 1.0, 1.0, 2.0]
    a = sp.coo_matrix((w, (rows, cols)), shape=(9, 9)).tocsr()
    a = (a + a.T).tocsr()
    comp = np.arange(5)
    pi = stationary_distribution(a, nodes=comp)
    deg = np.asarray(a.sum(axis=1)).ravel()
    np.testing.assert_allclose(pi[:5], deg[:5] / deg[:5].sum(), atol=1e-9)
    assert (pi[5:] == 0).all()
    whole = stationary_distribution(a)
    p = sp.diags(1 / deg) @ a
    np.testing.assert_allclose(p.T @ whole, whole, atol=1e-9)
    # Uniform start: each component keeps its share of nodes (5/9 and 4/9).
    assert abs(whole[:5].sum() - 5 / 9) < 1e-9


def test_graph_modes_hand_made():
    # Path 0-1-2-3-4-5 and an isolated node 6.
    rows, cols = [0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]
    w = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # 5-6 is an explicit zero: not an edge, 6 is isolated
    a = sp.coo_matrix((w, (rows, cols)), shape=(7, 7)).tocsr()
    a = (a + a.T).tocsr()
    pi = np.array([1, 3, 2, 1.5, 1, 4, 0], dtype=float)
    pi /= pi.sum()
    np.testing.assert_array_equal(graph_modes(a, pi), [5, 1])
    np.testing.assert_array_equal(graph_modes(a, pi, top_m=1), [5])
    # A tie between neighbours makes both modes.
    pi2 = np.array([1, 2, 3, 3, 1, 0.5, 0])
    np.testing.assert_array_equal(graph_modes(a, pi2), [2, 3])


def test_graph_modes_are_exactly_the_local_maxima(small_graph):
    _, _, a = small_graph
    pi = stationary_distribution(a, maxiter=20000)
    modes = graph_modes(a, pi)
    dense = a.toarray() > 0
    brute = [
        i
        for i in range(len(pi))
        if pi[i] > 0 and all(pi[i] >= pi[j] for j in np.flatnonzero(dense[i]))
    ]
    assert sorted(modes.tolist()) == brute
    assert np.all(np.diff(pi[modes]) <= 0)
    assert 0 < len(modes) < len(pi)


# ------------------------------------------------------------------------------ pools


def _ref_difference(first, second, k, max_size):
    out = []
    for f, s in zip(first, second, strict=True):
        sec = {v for v in s[:k] if v >= 0}
        out.append([v for v in f[:k] if v >= 0 and v not in sec][:max_size])
    return out


def test_pools_equal_python_set_differences():
    rng = np.random.default_rng(6)
    n_items, n_anchors, width = 40, 25, 20
    man = np.stack([rng.permutation(n_items)[:width] for _ in range(n_anchors)])
    euc = np.stack([rng.permutation(n_items)[:width] for _ in range(n_anchors)])
    man[3, 15:] = -1  # unreached items
    msims = -np.sort(-rng.random((n_anchors, width)), axis=1)
    pos = positive_pool(man, euc, k_pos=12, max_size=5, manifold_sims=msims)
    neg = negative_pool(euc, man, k_neg=16, max_size=50)
    for pool, ref in [
        (pos, _ref_difference(man, euc, 12, 5)),
        (neg, _ref_difference(euc, man, 16, 50)),
    ]:
        for r in range(n_anchors):
            assert pool.members[r, : pool.lengths[r]].tolist() == ref[r]
            assert (pool.members[r, pool.lengths[r] :] == -1).all()
    assert pos.members.shape == (n_anchors, 5) and neg.sims is None
    for r in range(n_anchors):
        cols = [list(man[r]).index(v) for v in pos.members[r, : pos.lengths[r]]]
        np.testing.assert_allclose(pos.sims[r, : pos.lengths[r]], msims[r, cols])


def test_pool_rates():
    members = np.array([[1, 2, -1], [0, 3, 2]])
    lengths = np.array([2, 3])
    labels = np.array([0, 0, 1, 1])
    anchors = np.array([0, 3])
    # anchor 0 (label 0): members 1 (same), 2 (diff); anchor 3 (label 1): 0, 3, 2 → diff, same, same
    assert pool_rates(members, lengths, anchors, labels) == pytest.approx(3 / 5)
    assert pool_rates(members, lengths, anchors, labels, positive=False) == pytest.approx(2 / 5)
    assert np.isnan(pool_rates(members[:, :0], np.zeros(2, int), anchors, labels))


@pytest.mark.parametrize("per", [30, 120])
def test_pool_size_rule_follows_cluster_size(per):
    """Tight, far-apart clusters with k = per − 1: each cluster is a complete component of the
    mutual graph with near-equal weights, so along every sweep the conductance falls until the
    whole cluster (cut 0) and the rule returns exactly k_pos = per, k_neg = 2·per. (Its accuracy
    on overlapping clusters with a sparse graph is measured by benchmarks/bench_mining.py
    --pools.)"""
    x, labels = clusters(600 // per, per, d=24, noise=0.01, seed=7)
    a = mutual_knn_graph(x, k=per - 1)
    n_comp, comp = connected_components(a)
    assert n_comp == 600 // per
    np.testing.assert_array_equal(comp[:, None] == comp[None, :], labels[:, None] == labels)
    assert pool_size_rule(a, n_probe=60) == (per, 2 * per)


def test_pool_size_rule_bounds():
    x, _ = clusters(2, 10, d=8, noise=0.1, seed=8)
    a = mutual_knn_graph(x, k=5)
    k_pos, k_neg = pool_size_rule(a, min_k=3)
    assert k_pos <= k_neg <= len(x) // 2


def test_mine_pools_composes_the_pieces(small_graph):
    x, _, _ = small_graph
    a = mutual_knn_graph(x, k=10)
    ah = normalize_graph(a)
    anchors = np.array([0, 11, 57])
    pos, neg = mine_pools(x, ah, anchors, k_pos=15, k_neg=30, max_size=10)
    _, full_e = knn_graph(x, 30)
    ms, mi = manifold_similarity(ah, anchors, topk=30)
    ref_pos = _ref_difference(mi, full_e[anchors], 15, 10)
    ref_neg = _ref_difference(full_e[anchors], mi, 30, 10)
    for r in range(3):
        assert pos.members[r, : pos.lengths[r]].tolist() == ref_pos[r]
        assert neg.members[r, : neg.lengths[r]].tolist() == ref_neg[r]
    assert np.all(pos.sims[pos.members >= 0] > 0)
