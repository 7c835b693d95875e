"""The nearest-neighbour layer over faiss: exact values on hand-made inputs, agreement with
brute force, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.data.imageset import DataError
from labelfree.graph.nn import (
    build_index,
    check_matrix,
    default_nlist,
    drop_self,
    kmeans,
    make_index,
    search,
    set_search_depth,
)


def test_drop_self_removes_exactly_one_column_per_row():
    idx = np.array(
        [
            [0, 2, 1],  # own id first
            [2, 1, 0],  # own id in the middle
            [0, 1, 3],  # own id pushed out by a duplicate: the last column goes
            [3, 3, 1],  # own id twice: only the first goes
        ]
    )
    sims = np.arange(12, dtype=np.float32).reshape(4, 3)
    s, i = drop_self(sims, idx)
    assert i.tolist() == [[2, 1], [2, 0], [0, 1], [3, 1]]
    assert s.tolist() == [[1, 2], [3, 5], [6, 7], [10, 11]]
    # with explicit query ids (a chunk of queries 10, 11)
    _, i = drop_self(np.zeros((2, 3)), np.array([[5, 10, 11], [11, 4, 10]]), ids=np.array([10, 11]))
    assert i.tolist() == [[5, 11], [4, 10]]


def test_flat_search_equals_brute_force_inner_product():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    q = rng.standard_normal((7, 6)).astype(np.float32)
    sims, idx = search(build_index(x, "flat"), q, 5)
    brute = q @ x.T
    expect = np.argsort(-brute, axis=1, kind="stable")[:, :5]
    assert idx.dtype == np.int64 and np.array_equal(idx, expect)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, expect, 1), rtol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "IVF4,Flat", "HNSW16,Flat"])
def test_approximate_kinds_are_exact_when_they_visit_everything(kind):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    index = build_index(x, kind, nlist=4, seed=0) if kind == "ivf" else build_index(x, kind)
    set_search_depth(index, ef_search=400, nprobe=4)
    _, idx = search(index, x[:20], 10)
    _, exact = search(build_index(x, "flat"), x[:20], 10)
    assert np.array_equal(idx, exact)


def test_l2_metric_and_bad_kinds():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], np.float32)
    d2, idx = search(build_index(x, "flat", metric="l2"), np.array([[2.9, 0.0]]), 3)
    assert idx.tolist() == [[2, 1, 0]]
    np.testing.assert_allclose(d2, [[0.01, 3.61, 8.41]], rtol=1e-5)
    with pytest.raises(DataError, match="unknown index kind 'tree'"):
        make_index(2, "tree")
    with pytest.raises(DataError, match="faiss cannot build index 'IVFx,Flat'"):
        make_index(2, "IVFx,Flat")


def test_check_matrix_names_what_and_rows():
    assert check_matrix([1, 2, 3]).shape == (1, 3)
    assert check_matrix(np.ones((2, 2), np.float64)).dtype == np.float32
    x = np.ones((4, 2))
    x[2, 1] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(
        DataError, match=r"query features: 2 NaN/inf values in 2 rows \(first rows: \[2, 3\]\)"
    ):
        check_matrix(x, "query features")
    with pytest.raises(DataError, match="must be a 2-D array"):
        check_matrix(np.ones((2, 2, 2)))


def test_kmeans_on_separated_clusters_and_seed():
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + 0.1 * np.arange(4)[:, None] for c in centres]).astype(np.float32)
    a = kmeans(x, 3, seed=3)
    b = kmeans(x, 3, seed=3)
    assert np.array_equal(a.assign, b.assign) and np.array_equal(a.centroids, b.centroids)
    # each true cluster is one k-means cluster, whatever the numbering
    groups = a.assign.reshape(3, 4)
    assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == 3
    # the distance reported is the squared distance to the assigned centre
    np.testing.assert_allclose(
        a.dist, ((x - a.centroids[a.assign]) ** 2).sum(1), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(DataError, match="k-means needs 1 <= k <= N"):
        kmeans(x, 13)


def test_default_nlist():
    assert default_nlist(10) == 1
    assert default_nlist(100_000) == 1264  # 4·√N below N / 39 = 2564
    assert default_nlist(1000) == 25  # capped by N / 39
