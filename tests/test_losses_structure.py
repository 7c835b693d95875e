"""Tuple sampling, kNN and the pair losses: hand computations and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelfree.data.imageset import DataError
from labelfree.graph.knn import knn
from labelfree.losses.pairs import contrastive_loss, info_nce, triplet_loss
from labelfree.structure.tuples import random_non_neighbours, tuple_batches


def test_knn_matches_brute_force_and_excludes_self():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    sims, idx = knn(x, 4)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    np.fill_diagonal(s, -np.inf)
    expected = np.argsort(-s, axis=1)[:, :4]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(s, expected, 1), rtol=1e-5)
    assert not (idx == np.arange(60)[:, None]).any()


def test_knn_with_duplicates_never_returns_self():
    x = np.ones((6, 3), dtype=np.float32)  # all identical: ties everywhere
    _, idx = knn(x, 3)
    assert not (idx == np.arange(6)[:, None]).any()


def test_knn_too_few_items():
    with pytest.raises(DataError, match="too few"):
        knn(np.eye(5, dtype=np.float32), 5)


def test_random_non_neighbours_avoid_anchor_and_neighbours():
    rng = np.random.default_rng(1)
    n, k = 30, 5
    table = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    anchors = np.repeat(np.arange(n), 400)
    neg = random_non_neighbours(anchors, table, n, rng)
    assert not (neg == anchors).any()
    assert not (table[anchors] == neg[:, None]).any()
    # Every allowed item is reachable: anchor 0 sees all n - 1 - k of its non-neighbours.
    allowed = set(range(n)) - {0} - set(table[0])
    assert set(neg[anchors == 0]) == allowed


def test_tuple_batches_positions_reconstruct_tuples():
    a = np.array([0, 1, 2, 3, 4])
    p = np.array([1, 0, 3, 2, 0])
    n = np.array([4, 4, 0, 1, 2])
    batches = tuple_batches(a, p, n, batch_size=2)
    assert [len(b["a"]) for b in batches] == [2, 2, 1]
    got = np.concatenate([np.stack([b["indices"][b[k]] for k in "apn"], axis=1) for b in batches])
    np.testing.assert_array_equal(got, np.stack([a, p, n], axis=1))
    assert all(len(np.unique(b["indices"])) == len(b["indices"]) for b in batches)


def test_contrastive_loss_hand_computed():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.0, 0.5], [2.0, 0.0]])
    a, p, n = torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([2, 3])
    # tuple 1: |z0-z1|^2 = 0.25, |z0-z2| = 0.5 -> [0.7 - 0.5]^2 = 0.04 -> 0.29
    # tuple 2: 0.25 + [0.7 - 2]_+^2 = 0.25
    assert contrastive_loss(emb, a, p, n, margin=0.7).item() == pytest.approx((0.29 + 0.25) / 2)
    w = torch.tensor([2.0, 0.0])
    assert contrastive_loss(emb, a, p, n, margin=0.7, weights=w).item() == pytest.approx(0.29)


def test_triplet_loss_pml_equals_explicit_formula():
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(10, 4), dim=1)
    a, p, n = torch.arange(0, 4), torch.arange(4, 8), torch.tensor([8, 9, 8, 9])
    d = lambda i, j: (emb[i] - emb[j]).pow(2).sum(1)  # noqa: E731
    expected = F.relu(0.5 + d(a, p) - d(a, n)).mean()
    assert triplet_loss(emb, a, p, n).item() == pytest.approx(expected.item(), rel=1e-6)
    ones = torch.ones(4)
    assert triplet_loss(emb, a, p, n, weights=ones).item() == pytest.approx(expected.item())


def test_info_nce_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    logits = torch.tensor([[1.0, 0.6], [0.0, 0.8]]) / 0.1
    expected = -(torch.log_softmax(logits, 1)[[0, 1], [0, 1]]).mean()
    assert info_nce(s, t, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_tuple_loss_dispatches_with_default_margins_and_weights():
    from labelfree.losses.pairs import tuple_loss

    torch.manual_seed(1)
    emb = F.normalize(torch.randn(6, 3), dim=1)
    batch = {
        "a": np.array([0, 1]),
        "p": np.array([2, 3]),
        "n": np.array([4, 5]),
        "w": np.array([0.5, 2.0]),
    }
    a, p, n = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])
    w = torch.tensor([0.5, 2.0])
    assert tuple_loss(emb, batch, "contrastive").item() == pytest.approx(
        contrastive_loss(emb, a, p, n, margin=0.7, weights=w).item()
    )
    assert tuple_loss(emb, batch, "triplet", margin=0.3).item() == pytest.approx(
        triplet_loss(emb, a, p, n, margin=0.3, weights=w).item()
    )
    assert tuple_loss(emb, batch, "contrastive").item() != pytest.approx(
        contrastive_loss(emb, a, p, n, margin=0.7).item()
    )  # the weights are applied
