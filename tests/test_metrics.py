"""Tests of labelfree.evaluate.metrics: hand-computed values and independent implementations."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN
from sklearn.metrics import average_precision_score, normalized_mutual_info_score

from labelfree.data.imageset import DataError
from labelfree.evaluate import (
    cluster_nmi,
    evaluate_embeddings,
    l2_normalize,
    recall_ks_for,
    retrieval_metrics,
)

# Six points on the unit circle; with cosine similarity the ranking is by angular distance.
#   p0   0° A | p1  20° A | p2  50° B | p3  95° A | p4 175° B | p5 270° B
# Each query's ranking of the others (angular distance), class, and hand-computed values;
# every query has R = 2.
#   p0: p1(20)A p2(50)B p5(90)B p3(95)A p4(175)B  R@1 1 Rp 1/2 MAP@R (1)/2        AP (1+2/4)/2
#   p1: p0(20)A p2(30)B p3(75)A p5(110)B p4(155)B R@1 1 Rp 1/2 MAP@R (1)/2        AP (1+2/3)/2
#   p2: p1(30)A p3(45)A p0(50)A p4(125)B p5(140)B R@1 0 Rp 0   MAP@R 0            AP (1/4+2/5)/2
#   p3: p2(45)B p1(75)A p4(80)B p0(95)A p5(175)B  R@1 0 Rp 1/2 MAP@R (1/2)/2      AP (1/2+2/4)/2
#   p4: p3(80)A p5(95)B p2(125)B p1(155)A p0(175)A R@1 0 Rp 1/2 MAP@R (1/2)/2     AP (1/2+2/3)/2
#   p5: p0(90)A p4(95)B p1(110)A p2(140)B p3(175)A R@1 0 Rp 1/2 MAP@R (1/2)/2     AP (1/2+2/4)/2
# First relevant rank: 1, 1, 4, 2, 2, 2.
#   R@1 = 2/6, R@2 = 5/6, R@4 = 1, R@8 = 1 (clipped to the 5 others)
#   R-precision = (0.5·5)/6 = 5/12
#   MAP@R = (0.5 + 0.5 + 0 + 0.25 + 0.25 + 0.25)/6 = 7/24
#   mAP = (90 + 100 + 39 + 60 + 70 + 60)/120/6 = 419/720
ANGLES = np.deg2rad([0.0, 20.0, 50.0, 95.0, 175.0, 270.0])
LABELS = np.array([0, 0, 1, 0, 1, 1])
EXPECTED = {
    "R@1": 2 / 6,
    "R@2": 5 / 6,
    "R@4": 1.0,
    "R@8": 1.0,
    "R-precision": 5 / 12,
    "MAP@R": 7 / 24,
    "mAP": 419 / 720,
}


def _circle(radii: np.ndarray | None = None) -> np.ndarray:
    pts = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
    if radii is not None:
        pts = pts * radii[:, None]
    return pts.astype(np.float32)


def _clustered(n: int, n_classes: int, d: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centres = rng.standard_normal((n_classes, d))
    x = centres[labels] + noise * rng.standard_normal((n, d))
    return x.astype(np.float32), labels


def test_hand_computed_example():
    got = retrieval_metrics(_circle(), LABELS)
    assert set(got) == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_normalize_makes_ranking_cosine():
    # Very different norms: cosine ranking (normalize=True) is unchanged ...
    radii = np.array([1.0, 5.0, 0.2, 3.0, 0.5, 9.0])
    got = retrieval_metrics(_circle(radii), LABELS)
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    # ... but the raw inner product ranks differently. The top result of query q is
    # argmax_j r_j·cos(angle q→j) (r_q > 0 does not change the order):
    #   q0: p1 5cos20 = 4.70 (A) hit      q1: p0 1cos20 = 0.94 (A) hit
    #   q2: p1 5cos30 = 4.33 (A) miss     q3: p1 5cos75 = 1.29 (A) hit (a miss under cosine)
    #   q4: p3 3cos80 = 0.52 (A) miss     q5: p0 1cos270 = 0 > p4 0.5cos95 = -0.04 (A) miss
    raw = retrieval_metrics(_circle(radii), LABELS, ks=(1,), normalize=False)
    assert raw["R@1"] == pytest.approx(3 / 6, abs=1e-12)


def test_lone_queries_are_excluded_but_stay_searchable():
    # a (0°) and b (10°) are class 0; c (180°) is the only member of class 1.
    x = np.array([[1.0, 0.0], [np.cos(0.1745), np.sin(0.1745)], [-1.0, 0.0]], np.float32)
    y = np.array([0, 0, 1])
    got = retrieval_metrics(x, y, ks=(1, 2))
    assert got["R@1"] == 1.0  # with c counted as a query it would be 2/3
    assert got["MAP@R"] == 1.0 and got["mAP"] == 1.0
    full = evaluate_embeddings(x, y, ks=(1,), nmi=False)
    assert full["n_queries"] == 2 and full["n_classes"] == 2
    # c stays in the reference set: put it between a and b's class mates and R@1 drops.
    x2 = np.array([[1.0, 0.0], [0.0, 1.0], [np.cos(0.3), np.sin(0.3)]], np.float32)
    assert retrieval_metrics(x2, y, ks=(1,))["R@1"] == 0.0


def test_no_valid_query_raises():
    with pytest.raises(DataError, match="no query"):
        retrieval_metrics(np.eye(3, dtype=np.float32), np.array([0, 1, 2]))


def _pml(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    calc = AccuracyCalculator(
        include=(
            "precision_at_1",
            "r_precision",
            "mean_average_precision_at_r",
            "mean_average_precision",
        ),
        exclude=(),
        k=None,  # every other item: the full ranking, which mean_average_precision needs
        knn_func=FaissKNN(index_init_fn=faiss.IndexFlatIP),
        device=torch.device("cpu"),
    )
    # In pml 2.x, reference=None means reference = query with ref_includes_query=True: the
    # query's own index is removed from its neighbours and R = class count - 1.
    res = calc.get_accuracy(l2_normalize(x), labels)
    return {
        "R@1": res["precision_at_1"],
        "R-precision": res["r_precision"],
        "MAP@R": res["mean_average_precision_at_r"],
        "mAP": res["mean_average_precision"],
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_pytorch_metric_learning(seed):
    x, y = _clustered(300, 6, 16, noise=1.5, seed=seed)
    y[0] = 99  # one singleton class: excluded as a query by both
    ours = retrieval_metrics(x, y)
    theirs = _pml(x, y)
    assert 0.05 < ours["MAP@R"] < 0.95  # not saturated, so agreement means something
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def _brute_force(x: np.ndarray, y: np.ndarray, ks, normalize: bool) -> dict[str, float]:
    """Dense N x N reference implementation with numpy and sklearn."""
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :-1]  # drop self (last)
    out = {f"R@{k}": [] for k in ks}
    out["mAP"] = []
    for q in range(len(x)):
        rel = y[order[q]] == y[q]
        if not rel.any():
            continue
        for k in ks:
            out[f"R@{k}"].append(rel[:k].any())
        others = np.arange(len(x)) != q
        out["mAP"].append(average_precision_score(y[others] == y[q], sims[q, others]))
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.mark.parametrize("normalize", [True, False])
def test_recall_and_map_against_brute_force(normalize):
    x, y = _clustered(250, 8, 12, noise=2.0, seed=3)
    ks = (1, 3, 10, 50)
    ours = retrieval_metrics(x, y, ks=ks, normalize=normalize)
    ref = _brute_force(x, y, ks, normalize)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_map_with_ties_matches_sklearn():
    # Coarsely quantised 1-D embeddings: many exactly tied scores under the inner product.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 60)
    x = np.round(y[:, None] * 0.5 + rng.normal(0, 0.6, (60, 1)), 1).astype(np.float32)
    x = np.concatenate([x, np.ones_like(x)], axis=1)  # no zero rows
    ours = retrieval_metrics(x, y, normalize=False)["mAP"]
    sims = (x.astype(np.float64) @ x.T.astype(np.float64)).astype(np.float32)
    aps = []
    for q in range(len(x)):
        others = np.arange(len(x)) != q
        aps.append(average_precision_score(y[others] == y[q], sims[q, others]))
    assert ours == pytest.approx(np.mean(aps), abs=1e-9)


def test_chunking_does_not_change_results():
    x, y = _clustered(200, 5, 8, noise=1.5, seed=7)
    a = retrieval_metrics(x, y, chunk_size=4096)
    b = retrieval_metrics(x, y, chunk_size=7)
    assert a == pytest.approx(b, abs=1e-12)


def test_map_full_optional():
    x, y = _clustered(50, 3, 4, noise=1.0, seed=0)
    assert "mAP" not in retrieval_metrics(x, y, map_full=False)


def test_input_validation():
    x, y = _clustered(20, 2, 4, noise=1.0, seed=0)
    bad = x.copy()
    bad[0, 0] = np.nan
    bad[3, 1] = np.inf
    bad[3, 2] = -np.inf
    with pytest.raises(DataError, match="3 NaN/inf values"):
        retrieval_metrics(bad, y)
    with pytest.raises(DataError, match="3 NaN/inf values"):
        cluster_nmi(bad, y)
    with pytest.raises(DataError, match="19 labels for 20 embeddings"):
        evaluate_embeddings(x, y[:-1])


def test_nmi_perfect_blobs():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 8) * 10
    y = np.repeat(np.arange(4), 25)
    x = (centres[y] + rng.normal(0, 0.1, (100, 8))).astype(np.float32)
    nmi, settings = cluster_nmi(x, y, seed=3)
    assert nmi == pytest.approx(1.0, abs=1e-12)
    assert settings == {
        "algorithm": "faiss.Kmeans",
        "k": 4,
        "niter": 50,
        "nredo": 5,
        "seed": 3,
        "spherical": True,
        "max_points_per_centroid": 26,
    }
    # One cluster carries no information about four classes.
    assert cluster_nmi(x, y, n_clusters=1)[0] == pytest.approx(0.0, abs=1e-12)


def test_nmi_equals_sklearn_on_faiss_assignments():
    x, y = _clustered(300, 6, 16, noise=2.0, seed=2)
    nmi, s = cluster_nmi(x, y, seed=4, niter=20, nredo=2)
    xn = l2_normalize(x)
    km = faiss.Kmeans(
        16,
        s["k"],
        niter=20,
        nredo=2,
        seed=4,
        spherical=True,
        max_points_per_centroid=s["max_points_per_centroid"],
        min_points_per_centroid=1,
    )
    km.train(xn)
    assign = km.index.search(xn, 1)[1][:, 0]
    expected = normalized_mutual_info_score(y, assign)
    assert 0.1 < expected < 0.99
    assert nmi == pytest.approx(expected, abs=1e-12)


def test_evaluate_embeddings_combines():
    x, y = _clustered(120, 4, 8, noise=1.0, seed=1)
    out = evaluate_embeddings(x, y, ks=(1, 4), seed=2)
    assert set(out) == {
        "R@1",
        "R@4",
        "MAP@R",
        "R-precision",
        "mAP",
        "NMI",
        "nmi_settings",
        "n_queries",
        "n_classes",
    }
    assert out["R@1"] == retrieval_metrics(x, y, ks=(1, 4))["R@1"]
    assert out["NMI"] == cluster_nmi(x, y, seed=2)[0]
    assert out["nmi_settings"]["seed"] == 2
    assert out["n_queries"] == 120 and out["n_classes"] == 4


def test_recall_ks_for():
    assert recall_ks_for(120_053, "sop:test") == (1, 10, 100, 1000)
    assert recall_ks_for(120_053, "SOP") == (1, 10, 100, 1000)
    assert recall_ks_for(5_924, "cub:test") == (1, 2, 4, 8)
    assert recall_ks_for(5_924, None) == (1, 2, 4, 8)
    assert recall_ks_for(500, "sop-small") == (1, 10, 100)
    assert recall_ks_for(5, None) == (1, 2, 4)


def test_ranking_metrics_of_the_exact_ranking_equal_retrieval_metrics():
    from labelfree.evaluate.metrics import ranking_metrics

    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(4), 15)
    x = rng.normal(size=(60, 8)) + 1.5 * rng.normal(size=(4, 8))[labels]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, -np.inf)
    ranked = np.argsort(-s, axis=1)[:, :59]
    got = ranking_metrics(ranked, labels)
    want = retrieval_metrics(x, labels, map_full=False)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # Truncated lists count missing ranks as misses: MAP@R can only drop.
    short = ranking_metrics(ranked[:, :5], labels)
    assert short["R@1"] == pytest.approx(want["R@1"])
    assert short["MAP@R"] < want["MAP@R"]


def test_merge_rankings_keeps_order_and_fills_from_fallback():
    from labelfree.evaluate.rerank import merge_rankings

    first = np.array([[3, -1, 1], [-1, -1, -1]])
    fallback = np.array([[1, 2, 3, 4], [4, 0, 2, 3]])
    np.testing.assert_array_equal(
        merge_rankings(first, fallback, 4), np.array([[3, 1, 2, 4], [4, 0, 2, 3]])
    )


def test_diffusion_rerank_helps_on_two_moons():
    """Two interleaved half-circles (50 points each, no noise): cosine ranking mixes them near
    the tips, diffusion along each manifold does not (the case manifold ranking exists for).
    Here the mutual 10-NN graph is exactly the two moons and the 20-step diffusion reaches
    every point of the query's own moon (f > 0) and none of the other (f = 0), so the diffused
    ranking lists the whole moon first: MAP@R exactly 1. (Gains on real data:
    benchmarks/bench_quality.py.)"""
    from sklearn.datasets import make_moons

    from labelfree.evaluate.rerank import rerank_metrics
    from labelfree.graph.manifold import (
        connected_components,
        manifold_similarity,
        mutual_knn_graph,
        normalize_graph,
    )

    x, y = make_moons(n_samples=100, noise=0.0, shuffle=False)
    x = np.c_[x - x.mean(0), np.full(len(x), 0.5)].astype(np.float32)  # cosine needs a 3rd axis
    a = mutual_knn_graph(x, k=10)  # the graph rerank_metrics builds (k = 10)
    n_comp, comp = connected_components(a)
    assert n_comp == 2 and (comp[y == 0] == comp[0]).all() and (comp[y == 1] != comp[0]).all()
    f = manifold_similarity(normalize_graph(a), np.arange(len(x)))  # default α, tol, 20 steps
    same = y[:, None] == y[None, :]
    assert (f[same] > 0).all() and (f[~same] == 0).all()
    base = retrieval_metrics(x, y, map_full=False)
    rr = rerank_metrics(x, y, k=10)
    assert base["MAP@R"] < 0.9
    assert rr["MAP@R"] == 1.0 and rr["R@1"] == 1.0
    assert rr["rerank_ms_per_query"] > 0
