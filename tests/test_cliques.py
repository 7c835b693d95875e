"""Compact cliques (complete linkage, merge rule) and the CCCP batch selection of CliqueCNN."""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize

from labelfree.graph.knn import l2_normalize
from labelfree.structure.clique_batches import (
    BatchProblem,
    clique_means,
    make_psd,
    project_capped_simplex,
    round_batches,
)
from labelfree.structure.cliques import (
    build_cliques,
    grow_cliques,
    intra_similarity,
    merge_cliques,
    pair_similarity,
)


def _mixture(n: int = 400, d: int = 8, centres: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    return (c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("kind", ["dot", "expdist"])
def test_every_clique_is_mutually_similar_above_its_threshold(kind):
    x = _mixture()
    for merge in (False, True):
        cl = build_cliques(x, 8, kind, min_size=2, merge=merge)
        assert len(cl) > 10
        xn = l2_normalize(x)
        for m, tau in zip(cl.members, cl.thresholds, strict=True):
            s = pair_similarity(xn[m], xn[m], kind)
            off = s[~np.eye(len(m), dtype=bool)]
            assert off.min() >= tau - 1e-5


def test_growth_is_complete_linkage_not_a_chain():
    # Points on an arc 10 degrees apart: each is most similar to its neighbours on the arc, so
    # max-similarity growth from the first point would chain along the whole arc.
    ang = np.deg2rad(np.arange(8) * 10.0)
    x = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    cliques, taus = grow_cliques(x, 3, "dot")
    # seed 0: neighbourhood {1, 2, 3}, threshold cos 30°; 3 is at 30° from 0 but then 1 (10°),
    # 2 (20°) join first, and 3 is within 30° of each of 0, 1, 2, so all four fit.
    assert cliques[0].tolist() == [0, 1, 2, 3]
    assert taus[0] == pytest.approx(np.cos(np.deg2rad(30)), abs=1e-6)
    # Seed 3's neighbourhood is {2, 4, 1} (or 5), threshold cos 20°: 2 and 4 are 20° apart
    # (ok) but 1 is 20° from 3 and 30° from 4: complete linkage must refuse 1 once 4 is in.
    s3 = cliques[3]
    xn = l2_normalize(x)
    s = xn[s3] @ xn[s3].T
    assert s.min() >= taus[3] - 1e-6
    assert len(s3) < 5


def test_merge_rule_holds_and_stops():
    x = _mixture(300, seed=3)
    kind = "dot"
    grown, taus = grow_cliques(x, 10, kind)
    cl = merge_cliques(x, grown, taus, kind, min_overlap=0.5)
    assert cl.merges, "expected some merges on a mixture"
    # No two remaining highly overlapping cliques could still be merged under the rule.
    xn = l2_normalize(x)
    for i, a in enumerate(cl.members):
        for j in range(i + 1, len(cl)):
            b = cl.members[j]
            shared = len(np.intersect1d(a, b))
            if len(a) < 2 or len(b) < 2 or shared < 0.5 * min(len(a), len(b)):
                continue
            u = np.union1d(a, b)
            tau = min(cl.thresholds[i], cl.thresholds[j])
            s = pair_similarity(xn[u], xn[u], kind)
            linkage_ok = s[~np.eye(len(u), dtype=bool)].min() >= tau
            half_ok = intra_similarity(xn, u, kind) >= 0.25 * (
                intra_similarity(xn, a, kind) + intra_similarity(xn, b, kind)
            )
            assert not (linkage_ok and half_ok), (i, j)


def test_assignment_matrix_and_clique_similarity_factor():
    x = l2_normalize(_mixture(200, seed=1))
    cl = build_cliques(x, 6, "dot", min_size=3)
    c = cl.assignment()
    assert c.shape == (len(cl), len(x))
    assert (np.asarray(c.sum(1)).ravel() == [len(m) for m in cl.members]).all()
    m = clique_means(x, c)
    # S' = average pairwise sample similarity between cliques = M Mᵀ (dot similarity).
    for a, b in [(0, 1), (2, 2), (3, len(cl) - 1)]:
        direct = (x[cl.members[a]] @ x[cl.members[b]].T).mean()
        assert m[a] @ m[b] == pytest.approx(direct, abs=1e-5)


def test_make_psd_clips_negative_eigenvalues():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s = a + a.T
    p = make_psd(s)
    w = np.linalg.eigvalsh(p)
    assert w.min() >= -1e-10
    # Projection onto the PSD cone: keeps the non-negative part of the spectrum exactly.
    w0, v0 = np.linalg.eigh(s)
    assert np.allclose(p, (v0 * np.maximum(w0, 0)) @ v0.T)
    g = a @ a.T
    assert np.allclose(make_psd(g), g)


def test_capped_simplex_projection_kkt_on_wide_rows_with_ties():
    """On wide rows (K = 5,000) with many tied values — where a short bisection cannot separate
    breakpoints — the result is still the projection: Σz = r, and z = clip(y − τ, 0, 1) for one
    τ per row (the KKT conditions of the projection onto the capped simplex)."""
    rng = np.random.default_rng(1)
    y = np.round(rng.normal(scale=0.05, size=(6, 5000)), 3)  # ~100 distinct values per row
    y[0, :40] = 2.0  # more entries at the cap than r allows
    y[1] = 0.25  # all tied
    r = 20
    z = project_capped_simplex(y, r)
    assert np.allclose(z.sum(1), r, atol=1e-9)
    for row, zr in zip(y, z, strict=True):
        inner = (zr > 1e-12) & (zr < 1 - 1e-12)
        if inner.any():
            tau = (row - zr)[inner]
            assert np.ptp(tau) < 1e-9
            t = tau.mean()
        else:
            t = np.max(row[zr <= 1e-12], initial=-np.inf)
        assert np.all(row[zr <= 1e-12] <= t + 1e-9)
        assert np.all(row[zr >= 1 - 1e-12] - 1 >= t - 1e-9)


def test_capped_simplex_projection_matches_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 7)) * 0.8
    r = 3
    z = project_capped_simplex(y, r)
    for row, zr in zip(y, z, strict=True):
        res = minimize(
            lambda v, row=row: ((v - row) ** 2).sum(),
            np.full(7, r / 7),
            jac=lambda v, row=row: 2 * (v - row),
            bounds=[(0, 1)] * 7,
            constraints=[{"type": "eq", "fun": lambda v: v.sum() - r}],
            method="SLSQP",
            options={"ftol": 1e-12, "maxiter": 500},
        )
        assert np.allclose(zr, res.x, atol=1e-5)
    assert np.allclose(z.sum(1), r, atol=1e-9)
    assert z.min() >= 0 and z.max() <= 1


def _tiny_problem(**kw) -> BatchProblem:
    # 3 cliques over 4 items: {0,1}, {1,2}, {3}
    c = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=float))
    s = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 2.0]])
    return BatchProblem(c, 2, 2, s=s, **kw)


def test_objective_equals_hand_computation():
    prob = _tiny_problem(lambda1=0.7, lambda2=0.3, lambda3=2.0, eps=1e-3)
    z = np.array([[1.0, 1.0, 0.0], [0.0, 0.5, 0.5]])
    s = prob.s  # PSD already; divided by mean diag 2 -> [[1, .5, 0], [.5, 1, .25], [0, .25, 1]]
    assert np.allclose(s, [[1, 0.5, 0], [0.5, 1, 0.25], [0, 0.25, 1]])
    quad = 1 + 1 + 2 * 0.5 + (0.25 + 0.25 + 2 * 0.25 * 0.25)  # z_b S' z_bᵀ, b = 1, 2
    diag = 1 + 1 + (0.25 + 0.25)

    def pp(v):
        return sum((t + 1e-3) ** (1 / 16) - 1e-3 ** (1 / 16) for t in v)

    per = pp([1, 2, 1, 0]) + pp([0, 0.5, 0.5, 0.5])  # z_b C
    total = pp([1, 2.5, 1.5, 0.5])  # 1ZC
    binar = 0.25 * 3 + 0.25  # (z - 0.5)^2: row 1 all at the bounds, row 2 only its 0
    expect = quad - diag - 0.7 * per - 0.3 * total - 2.0 * binar
    assert prob.objective(z) == pytest.approx(expect, rel=1e-10)


@pytest.mark.parametrize("part", ["u", "v"])
def test_gradients_match_finite_differences(part):
    prob = _tiny_problem(lambda1=0.7, lambda2=0.3, lambda3=2.0)
    rng = np.random.default_rng(1)
    z = rng.uniform(0.2, 0.8, size=(2, 3))
    f = getattr(prob, part)
    g = f(z)[1]
    h = 1e-6
    for i in range(2):
        for j in range(3):
            e = np.zeros_like(z)
            e[i, j] = h
            num = (f(z + e)[0] - f(z - e)[0]) / (2 * h)
            assert g[i, j] == pytest.approx(num, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("dense", [True, False])
def test_cccp_never_increases_objective_and_meets_row_sums(dense):
    x = l2_normalize(_mixture(300, seed=2))
    cl = build_cliques(x, 8, "dot", min_size=3)
    c = cl.assignment()
    m = clique_means(x, c)
    r = 5
    if dense:
        # a non-PSD similarity between cliques: CCCP must still decrease after make_psd
        rng = np.random.default_rng(0)
        noise = rng.normal(scale=0.2, size=(len(cl), len(cl)))
        prob = BatchProblem(c, 8, r, s=m @ m.T + noise + noise.T, lambda3=30.0)
    else:
        prob = BatchProblem(c, 8, r, means=m, lambda3=30.0)
    z, hist = prob.cccp(prob.initial(np.random.default_rng(0)), outer=6, inner=8)
    assert len(hist) >= 2
    assert all(b <= a + 1e-9 * max(1.0, abs(a)) for a, b in zip(hist, hist[1:], strict=False))
    assert hist[-1] < hist[0]
    assert np.allclose(z.sum(1), r, atol=1e-8)
    assert z.min() >= 0 and z.max() <= 1
    zb = round_batches(z, r)
    assert (zb.sum(1) == r).all() and set(np.unique(zb)) <= {0, 1}


def _coverage_problem(**terms) -> BatchProblem:
    # 4 disjoint cliques of 4, 3, 2 and 2 items (11 items), B = 2 batches of r = 2 cliques.
    # S' = I: distinct cliques are dissimilar, so the similarity term is exactly 0 and only the
    # coverage terms (and the binarisation term, constant on binary Z) remain.
    c = np.zeros((4, 11))
    for k, (lo, hi) in enumerate([(0, 4), (4, 7), (7, 9), (9, 11)]):
        c[k, lo:hi] = 1
    return BatchProblem(sp.csr_matrix(c), 2, 2, s=np.eye(4), **terms)


def _minimisers(prob: BatchProblem) -> list[np.ndarray]:
    """Every binary Z (each batch holds r cliques) attaining the smallest relaxed Eq. 3.1."""
    k, b, r = prob.c.shape[0], prob.n_batches, prob.r
    rows = [np.isin(np.arange(k), pick).astype(float) for pick in combinations(range(k), r)]
    zs = [np.stack(choice) for choice in product(rows, repeat=b)]
    f = np.array([prob.objective(z) for z in zs])
    return [z for z, v in zip(zs, f, strict=True) if v <= f.min() + 1e-9]


def test_dropping_terms_changes_the_solution():
    """Seed 001 (iii): without the total-coverage term every batch takes the same largest
    cliques; with it the batches spread over the cliques. Exhaustive over the binary Z of a
    hand-built instance, with the objective's values written out."""
    eps, p = 1e-3, 1 / 16
    once = (1 + eps) ** p - eps**p  # an item covered once: ~0.351
    twice = (2 + eps) ** p - eps**p  # covered twice: ~0.395, barely more than once
    collapsed = np.array([[1.0, 1, 0, 0], [1, 1, 0, 0]])  # both batches on the 4- and 3-clique
    spread = np.array([[1.0, 1, 0, 0], [0, 0, 1, 1]])  # disjoint batches covering all 11 items
    binar = 100.0 * 0.25 * 8  # λ₃‖Z − 0.5‖²_F, the same for every binary Z
    lam1 = 1 / 2  # the default 1/B

    full, no_total = _coverage_problem(), _coverage_problem(lambda2=0.0)
    assert full.lambda1 == lam1 and full.lambda2 == 1.0 and full.lambda3 == 100.0
    # per-batch coverage: 7 + 7 items vs 7 + 4; total coverage: 7 items twice vs 11 once
    assert full.objective(collapsed) == pytest.approx(
        -lam1 * 14 * once - 7 * twice - binar, rel=1e-12
    )
    assert full.objective(spread) == pytest.approx(-lam1 * 11 * once - 11 * once - binar, rel=1e-12)
    assert no_total.objective(collapsed) == pytest.approx(-lam1 * 14 * once - binar, rel=1e-12)
    assert no_total.objective(spread) == pytest.approx(-lam1 * 11 * once - binar, rel=1e-12)

    def coverage(z: np.ndarray) -> int:
        return int(((z.sum(0) @ full.c.toarray()) > 0).sum())

    # λ₂ = 0: the batches are independent and each maximises its own coverage, so the unique
    # optimum puts every batch on the two largest cliques: 1 distinct batch, 7 items covered.
    best = _minimisers(no_total)
    assert len(best) == 1
    np.testing.assert_array_equal(best[0], collapsed)
    # λ₂ = 1: a second cover of an item adds twice − once ≈ 0.04, a first cover ≈ 0.35, so the
    # optima are exactly the disjoint pairs of batches that cover all 11 items.
    best = _minimisers(full)
    assert len(best) == 6  # 3 ways to split the 4 cliques into two pairs, × 2 batch orders
    for z in best:
        assert coverage(z) == 11 and (z.sum(0) == 1).all()
        assert len(np.unique(z, axis=0)) == 2
    assert coverage(best[0]) > coverage(collapsed)

    # The same with λ₁ = 1 (per-batch coverage as heavy as the total's): without the total term
    # the optimum is still the collapse; with it the batches share the 4-clique only.
    best = _minimisers(_coverage_problem(lambda1=1.0, lambda2=0.0))
    assert len(best) == 1
    np.testing.assert_array_equal(best[0], collapsed)
    best = _minimisers(_coverage_problem(lambda1=1.0))
    assert len(best) == 4  # {4, 3} with {4, 2} or {4, 2'}, × 2 batch orders
    for z in best:
        assert z[:, 0].sum() == 2 and len(np.unique(z, axis=0)) == 2 and coverage(z) == 9


def test_batch_items_drops_ambiguous_items_and_thin_cliques_by_hand():
    from labelfree.structure.clique_batches import batch_items, clique_purity, draw_steps

    members = [np.array([0, 1, 2]), np.array([2, 3, 4]), np.array([5, 6]), np.array([6, 7])]
    z = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]])
    out = batch_items(z, members)
    # row 0: item 2 is in both cliques → dropped; cliques {0,1} and {3,4} remain
    assert out[0][0].tolist() == [0, 1, 3, 4] and out[0][1].tolist() == [0, 0, 1, 1]
    assert out[1][0].tolist() == [0, 1, 2, 5, 6] and out[1][1].tolist() == [0, 0, 0, 1, 1]
    # row 2: item 6 is shared → each clique keeps one item → fewer than 2 cliques: dropped
    assert len(out) == 2
    steps = draw_steps(out, 50, 1, np.random.default_rng(0))
    for idx, lab in steps:  # one member of each clique per step, from one pooled batch
        assert sorted(lab.tolist()) == [0, 1]
        assert any(set(idx.tolist()) <= set(b[0].tolist()) for b in out)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    stats = clique_purity(members, out, labels)
    # within-clique pairs: {0,1,2} 6/6 same; {2,3,4} 2/6; {5,6} 2/2; {6,7} 2/2 → 12/16
    assert stats["positive_tp_rate"] == pytest.approx(12 / 16)
    # across cliques, batch 0: 8 ordered pairs, all different; batch 1: 12, all different
    assert stats["negative_tn_rate"] == 1.0
