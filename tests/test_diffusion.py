"""The diffusion embedding: its soft-target loss, its targets, its batches, and the
start-consistency term every method can add."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss

from labelfree.graph.manifold import (
    knn_graph,
    manifold_similarity,
    mutual_knn_graph,
    normalize_graph,
)
from labelfree.losses.pairs import info_nce
from labelfree.losses.soft import soft_target_loss
from labelfree.methods import get_method
from labelfree.methods.diffusion import diffusion_targets


def test_soft_target_loss_by_hand_on_three_items():
    # cosines: 1·2 = 0.6, 1·3 = 0, 2·3 = 0.8; temperature 1
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    t = torch.tensor([[9.0, 3.0, 1.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    row0 = -(
        0.75 * (0.6 - math.log(math.exp(0.6) + 1)) + 0.25 * (0.0 - math.log(math.exp(0.6) + 1))
    )
    row2 = -(0.8 - math.log(1 + math.exp(0.8)))  # all of row 2's mass on item 2 (index 1)
    got = soft_target_loss(z, t, temperature=1.0)
    assert got.item() == pytest.approx((row0 + row2) / 2, rel=1e-6)


def test_soft_target_loss_with_label_targets_is_pml_supcon():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(12, 5, generator=g), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4])  # class 4 has no positive
    same = (labels[:, None] == labels[None, :]).float()
    ours = soft_target_loss(z, same, temperature=0.2)
    theirs = SupConLoss(temperature=0.2)(z, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_soft_target_loss_with_one_hot_targets_is_info_nce():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    z = torch.cat([a, b])  # each a_i's only target is b_i: InfoNCE over the 11 others
    t = torch.zeros(12, 12)
    t[torch.arange(6), torch.arange(6) + 6] = 1
    logits = a @ z.t() / 0.1
    logits[torch.arange(6), torch.arange(6)] = float("-inf")
    want = torch.nn.functional.cross_entropy(logits, torch.arange(6) + 6)
    assert soft_target_loss(z, t, 0.1).item() == pytest.approx(want.item(), rel=1e-6)


def test_soft_target_loss_without_targets_is_zero_and_differentiable():
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    loss = soft_target_loss(z, torch.zeros(4, 4))
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None


def _two_clusters(n: int = 40) -> np.ndarray:
    """Two noise-free arcs of the unit sphere at least 77° apart (steps of 1.5°): every
    manifold neighbour lies on the item's own arc."""
    t = np.linspace(0, 0.5, n // 2)
    a = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1)
    b = np.stack([np.zeros_like(t), np.sin(t), np.cos(t)], 1)
    return np.concatenate([a, b]).astype(np.float32)


def test_diffusion_targets_are_the_manifold_neighbours_symmetrised():
    x = _two_clusters()
    s = diffusion_targets(x, k_graph=4, k_targets=6, degree_normalized=False)
    graph = mutual_knn_graph(None, k=4, neighbours=knn_graph(x, 4))
    sims, idx = manifold_similarity(normalize_graph(graph), np.arange(len(x)), topk=6)
    np.testing.assert_array_equal(s.idx, idx)
    deg = np.asarray(graph.sum(axis=1)).ravel()
    _, idx_deg = manifold_similarity(normalize_graph(graph), np.arange(len(x)), topk=6, degrees=deg)
    np.testing.assert_array_equal(diffusion_targets(x, k_graph=4, k_targets=6).idx, idx_deg)
    w = np.zeros((len(x), len(x)), dtype=np.float32)
    for i in range(len(x)):
        keep = idx[i] >= 0
        w[i, idx[i][keep]] = sims[i][keep] / sims[i, 0]
    np.testing.assert_allclose(s.targets.toarray(), (w + w.T) / 2, rtol=1e-6)
    t = s.targets.toarray()
    assert (t[:20, 20:] == 0).all() and (t[20:, :20] == 0).all()  # never across the gap
    flat = diffusion_targets(x, k_graph=4, k_targets=6, flat=True).targets.toarray()
    assert set(np.unique(flat)) <= {0.0, 0.5, 1.0}


def test_batches_pair_each_anchor_with_a_neighbour_and_carry_its_targets():
    x = _two_clusters()
    m = get_method("diffusion", k_graph=4, k_targets=6, batch_size=8, seed=0)
    s = m.structure(x, 0)
    batches = m.batches(s, np.random.default_rng(0))
    seen = np.concatenate([b["indices"] for b in batches])
    assert len(batches) == 5 and set(range(40)) <= set(seen)
    dense = s.targets.toarray()
    for b in batches:
        items = b["indices"]
        assert len(np.unique(items)) == len(items)
        np.testing.assert_array_equal(b["target"], dense[np.ix_(items, items)])
        off_diag = b["target"] - np.diag(np.diag(b["target"]))
        assert (off_diag.sum(axis=1) > 0).sum() >= 8  # every anchor has mass in its batch


def test_consistency_term_is_weighted_info_nce_against_the_start():
    from labelfree.data.bundled import digits

    data = digits("train", image_size=16).per_class(6, seed=0)
    m = get_method(
        "hadsell", start="scratch", epochs=0, consistency=2.5, device="cpu", progress=False
    )
    m.fit(data)
    start = m.embed(data)
    term = m._consistency(lambda: start, torch.device("cpu"))
    emb = torch.nn.functional.normalize(torch.randn(5, start.shape[1]), dim=1)
    batch = {"indices": np.array([3, 0, 7, 1, 9])}
    want = 2.5 * info_nce(emb, torch.from_numpy(start[batch["indices"]]), 0.1)
    assert term(emb, batch).item() == pytest.approx(want.item(), rel=1e-6)
    assert get_method("hadsell")._consistency(lambda: start, torch.device("cpu")) is None


def test_consistency_changes_training_and_zero_is_the_plain_loss():
    from labelfree.data.bundled import digits

    data = digits("train", image_size=16).per_class(8, seed=0)
    opts = dict(start="scratch", epochs=1, batch_size=16, device="cpu", progress=False, seed=3)
    plain = get_method("hadsell", **opts).fit(data).embed(data)
    zero = get_method("hadsell", consistency=0.0, **opts).fit(data).embed(data)
    kept = get_method("hadsell", consistency=1.0, **opts).fit(data).embed(data)
    np.testing.assert_array_equal(plain, zero)
    assert np.abs(plain - kept).max() > 1e-4
