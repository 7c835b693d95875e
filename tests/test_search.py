"""Tests of labelfree.search.EmbeddingIndex."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from labelfree.data.imageset import DataError
from labelfree.search import EmbeddingIndex


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _brute_top_k(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ xn.T.astype(np.float64)
    idx = np.argsort(-sims, axis=1)[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def test_flat_equals_brute_force():
    x, q = _data(500, 24, 0), _data(40, 24, 1)
    # Very different norms: the index ranks by cosine, not by inner product.
    x *= np.random.default_rng(2).uniform(0.1, 10.0, (500, 1)).astype(np.float32)
    index = EmbeddingIndex(x, kind="flat")
    scores, idx = index.search(q, 10)
    ref_scores, ref_idx = _brute_top_k(x, q, 10)
    assert idx.dtype == np.int64 and idx.shape == (40, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_single_exact_neighbours():
    # Hand-made: the query (1, 1) is at 45°; items at 0°, 40°, 100°, 180° with various norms,
    # so the cosine ranking is 40° (5° away), 0° (45°), 100° (55°), 180° (135°).
    a = np.deg2rad([0.0, 40.0, 100.0, 180.0])
    x = np.stack([np.cos(a), np.sin(a)], axis=1) * np.array([[3.0], [1.0], [0.5], [2.0]])
    scores, idx = EmbeddingIndex(x).search(np.array([1.0, 1.0]), 4)
    np.testing.assert_array_equal(idx[0], [1, 0, 2, 3])
    expected = np.cos(np.deg2rad([5.0, 45.0, 55.0, 135.0]))
    np.testing.assert_allclose(scores[0], expected, atol=1e-6)


def test_k_clipped_and_add_appends():
    x = _data(5, 8)
    index = EmbeddingIndex(x, paths=[f"img{i}.png" for i in range(5)], labels=np.arange(5))
    scores, idx = index.search(x[:2], 50)
    assert idx.shape == (2, 5)
    assert idx[0, 0] == 0 and idx[1, 0] == 1  # each item is its own best match
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)
    extra = _data(3, 8, seed=9)
    index.add(extra, paths=["a", "b", "c"], labels=[7, 8, 9])
    assert len(index) == 8 and index.paths[-1] == "c"
    np.testing.assert_array_equal(index.labels, [0, 1, 2, 3, 4, 7, 8, 9])
    _, idx = index.search(extra * 4.0, 1)
    np.testing.assert_array_equal(idx[:, 0], [5, 6, 7])
    with pytest.raises(DataError, match="paths must be given on every add"):
        index.add(extra, labels=[1, 2, 3])


def test_hnsw_results_are_true_neighbours_and_exact_at_full_depth():
    """What holds for any approximate search, and exactness once the search depth covers the
    whole (connected) HNSW base layer. Recall at the default depth is measured in
    benchmarks/bench_search.py."""
    x, q = _data(2000, 32, 0), _data(200, 32, 1)
    ref_scores, _ = _brute_top_k(x, q, 10)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    hnsw = EmbeddingIndex(x, kind="hnsw")
    assert hnsw.kind == "hnsw" and isinstance(hnsw._index, faiss.IndexHNSWFlat)
    scores, approx = hnsw.search(q, 10)
    assert approx.shape == (200, 10) and (approx >= 0).all() and (approx < 2000).all()
    assert all(len(set(row)) == 10 for row in approx.tolist())
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # each score is the true cosine of its pair; the j-th best of any 10 items is at most the
    # j-th best of all
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", qn, xn[approx]), atol=1e-5)
    assert np.all(scores <= ref_scores + 1e-5)
    full, _ = EmbeddingIndex(x, kind="hnsw", ef_search=2000).search(q, 10)
    np.testing.assert_allclose(full, ref_scores, atol=1e-5)


def test_ivf_trains_or_falls_back():
    with pytest.warns(UserWarning, match="using an exact flat index"):
        small = EmbeddingIndex(_data(300, 8), kind="ivf")
    assert small.kind == "flat" and small.requested_kind == "ivf"
    # 39·nlist points with nlist = 4·sqrt(N): IVF from N >= 24,336. Use an explicit nlist here.
    x, q = _data(3000, 16, 3), _data(100, 16, 4)
    ivf = EmbeddingIndex(x, kind="ivf", nlist=16, nprobe=16)  # visiting every list: exact
    assert ivf.kind == "ivf"
    _, got = ivf.search(q, 5)
    _, exact = EmbeddingIndex(x).search(q, 5)
    np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    x, q = _data(600, 16, 5), _data(30, 16, 6)
    paths = [f"dir/{i}.jpg" for i in range(600)]
    labels = np.arange(600) % 7
    index = EmbeddingIndex(x, paths=paths, labels=labels, kind=kind, ef_search=40)
    before = index.search(q, 8)
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["kind"] == kind and meta["dim"] == 16 and meta["count"] == 600
    assert not list((tmp_path / "idx").glob(".*tmp*"))  # no temporary files left behind
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    after = loaded.search(q, 8)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    assert loaded.paths == paths and loaded.kind == kind and len(loaded) == 600
    np.testing.assert_array_equal(loaded.labels, labels)
    if kind == "hnsw":
        assert loaded._index.hnsw.efSearch == 40


def test_save_load_ivf_keeps_nprobe(tmp_path):
    x = _data(3000, 16, 3)
    index = EmbeddingIndex(x, kind="ivf", nlist=32, nprobe=3)
    index.save(tmp_path)
    loaded = EmbeddingIndex.load(tmp_path)
    assert loaded.kind == "ivf" and loaded.params["nprobe"] == 3
    q = _data(20, 16, 8)
    np.testing.assert_array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])


def test_load_missing_index_is_clear(tmp_path):
    with pytest.raises(DataError, match="no saved search index here.*index.faiss"):
        EmbeddingIndex.load(tmp_path)
    with pytest.raises(DataError, match="no such directory"):
        EmbeddingIndex.load(tmp_path / "nope")


def test_dimension_mismatch_names_both_dims():
    index = EmbeddingIndex(_data(10, 8))
    with pytest.raises(DataError, match="queries have dimension 5 but the index has dimension 8"):
        index.search(_data(2, 5), 3)
    with pytest.raises(DataError, match="dimension 7 but the index has dimension 8"):
        index.add(_data(2, 7))


def test_bad_inputs():
    with pytest.raises(DataError, match="unknown index kind 'lsh'"):
        EmbeddingIndex(_data(10, 4), kind="lsh")
    with pytest.raises(DataError, match="3 paths for 10 embeddings"):
        EmbeddingIndex(_data(10, 4), paths=["a", "b", "c"])
    bad = _data(4, 4)
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match="1 NaN/inf"):
        EmbeddingIndex(_data(10, 4)).search(bad, 2)
