"""Mining on Manifolds: the structure step, epoch tuples and a short fit."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.graph.knn import knn
from labelfree.graph.manifold import manifold_similarity, mutual_knn_graph, normalize_graph
from labelfree.methods import get_method
from labelfree.train.loop import EpochContext


def _blobs(n_per=30, n_cls=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_cls, d)) * 3
    labels = np.repeat(np.arange(n_cls), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), d))).astype(np.float32), labels


def test_pools_are_the_set_differences_of_manifold_and_euclidean_neighbours():
    x, _ = _blobs()
    m = get_method("mom", k_graph=8, k_pos=10, k_neg=20, pool_max=50)
    s = m.structure(x, 0)
    _, e_idx = knn(x, 20)
    _, m_idx = manifold_similarity(
        normalize_graph(mutual_knn_graph(x, k=8)), np.arange(len(x)), topk=20
    )
    kept = {int(a): i for i, a in enumerate(s.anchors)}
    for a in range(len(x)):
        pos = [j for j in m_idx[a, :10] if j >= 0 and j not in set(e_idx[a, :10])]
        neg = [j for j in e_idx[a, :20] if j not in set(m_idx[a, :20])]
        if a not in kept:
            assert not pos or not neg  # only anchors with an empty pool are dropped
            continue
        i = kept[a]
        assert list(s.pos[i, : s.pos_len[i]]) == pos
        assert list(s.neg[i, : s.neg_len[i]]) == neg


def test_euclidean_positives_and_weights():
    x, _ = _blobs(seed=1)
    s = get_method("mom", positives="euclidean", negatives="random", nn_pos=5).structure(x, 0)
    np.testing.assert_array_equal(s.pos, knn(x, 5)[1])
    sw = get_method("mom", k_graph=8, k_pos=10, k_neg=20, weighted=True).structure(x, 0)
    valid = np.arange(sw.pos_w.shape[1])[None, :] < sw.pos_len[:, None]
    assert sw.pos_w[valid].mean() == pytest.approx(1.0, rel=1e-5)
    assert (sw.pos_w[valid] > 0).all()
    with pytest.raises(ValueError, match="weighted needs manifold positives"):
        get_method("mom", positives="euclidean", weighted=True).structure(x, 0)
    # defaults: the paper's weighted MoM with manifold positives, unweighted with Euclidean ones
    sd = get_method("mom", k_graph=8, k_pos=10, k_neg=20).structure(x, 0)
    np.testing.assert_array_equal(sd.pos_w, sw.pos_w)
    assert s.pos_w is None
    assert get_method("mom", k_graph=8, weighted=False).structure(x, 0).pos_w is None


def test_hard_negative_is_among_the_nearest_pool_members_in_the_current_embedding():
    x, _ = _blobs(seed=2)
    m = get_method("mom", k_graph=8, k_pos=10, k_neg=20, hard_negatives=3, batch_size=1000)
    s = m.structure(x, 0)
    z = np.random.default_rng(3).normal(size=(len(x), 4)).astype(np.float32)
    (batch,) = m.batches(s, np.random.default_rng(4), EpochContext(lambda: z, 0, 0))
    a, n = batch["indices"][batch["a"]], batch["indices"][batch["n"]]
    row = {int(v): i for i, v in enumerate(s.anchors)}
    for ai, ni in zip(a, n, strict=True):
        i = row[int(ai)]
        pool = s.neg[i, : s.neg_len[i]]
        d = ((z[pool] - z[ai]) ** 2).sum(1)
        assert ni in pool[np.argsort(d)[:3]]


def test_short_fit_logs_pool_rates():
    from labelfree.data.bundled import digits

    data = digits("train").per_class(40, seed=0)
    m = get_method(
        "mom", start="feature-head", features="pixels", epochs=1, k_graph=10, progress=False
    ).fit(data)
    rec = m.history_[0]
    assert 0 <= rec["structure/positive_tp_rate"] <= 1
    assert 0 <= rec["structure/negative_tn_rate"] <= 1
    assert rec["structure/k_pos"] >= 10  # from the label-free pool-size rule
    assert m.embed(data).shape == (len(data), 64)
