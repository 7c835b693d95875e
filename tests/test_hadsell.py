"""The Hadsell baseline's structure step, tuples and diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.graph.knn import knn
from labelfree.methods import get_method
from labelfree.methods.hadsell import HadsellStructure


def test_structure_positives_are_the_euclidean_neighbours():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 6)).astype(np.float32)
    m = get_method("hadsell", k_pos=3)
    s = m.structure(g, 0)
    np.testing.assert_array_equal(s.positives, knn(g, 3)[1])


def test_epoch_tuples_draw_positives_from_neighbours_and_negatives_elsewhere():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(50, 4)).astype(np.float32)
    m = get_method("hadsell", k_pos=5, batch_size=16)
    s = m.structure(g, 0)
    batches = m.batches(s, np.random.default_rng(2))
    a = np.concatenate([b["indices"][b["a"]] for b in batches])
    p = np.concatenate([b["indices"][b["p"]] for b in batches])
    n = np.concatenate([b["indices"][b["n"]] for b in batches])
    assert sorted(a) == list(range(50))  # every item is an anchor once per epoch
    table = s.positives
    assert all(pi in table[ai] for ai, pi in zip(a, p, strict=True))
    assert not any(ni in table[ai] or ni == ai for ai, ni in zip(a, n, strict=True))


def test_structure_stats_hand_computed():
    # 6 items, labels 0 0 0 1 1 1, k = 1: positives below.
    labels = np.array([0, 0, 0, 1, 1, 1])
    positives = np.array([[1], [0], [3], [4], [5], [2]])
    stats = get_method("hadsell", k_pos=1).structure_stats(HadsellStructure(positives), labels)
    # same-label positives: items 0, 1, 3, 4 -> 4/6
    assert stats["positive_tp_rate"] == pytest.approx(4 / 6)
    # non-neighbours per anchor: 6 - 1 - 1 = 4; same-label among them:
    # 0: {2} ->1, 1: {2} ->1, 2: {0,1} ->2, 3: {5} ->1, 4: {3} ->1, 5: {3,4} ->2
    assert stats["negative_tn_rate"] == pytest.approx(1 - np.mean([1, 1, 2, 1, 1, 2]) / 4)


def test_unknown_loss_and_start_are_refused():
    with pytest.raises(ValueError, match="option loss='hinge': choose one of triplet"):
        get_method("hadsell", loss="hinge")
    with pytest.raises(ValueError, match="option start='imagenet': choose one of scratch"):
        get_method("hadsell", start="imagenet")
