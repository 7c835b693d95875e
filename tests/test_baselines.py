"""The "no structure" and clustering baselines: instance discrimination's memory-bank losses and
updates, DeepCluster's sampler and re-initialised head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import NTXentLoss

from labelfree.data.bundled import digits
from labelfree.losses.memory_bank import MemoryBank, bank_nce_loss, bank_softmax_loss
from labelfree.losses.stml import (
    contextual_similarity,
    mean_normalised_distances,
    relaxed_contrastive,
    self_distillation,
    teacher_similarity,
)
from labelfree.methods import get_method
from labelfree.methods.exemplar_cnn import gradient_energy
from labelfree.methods.stml import NeighbourStructure
from labelfree.structure.partition import cluster_uniform_probabilities, pseudo_class_count

TINY = dict(start="feature-head", features="pixels", batch_size=8, progress=False)


def _unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def test_bank_softmax_by_hand():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    f = torch.tensor([[0.6, 0.8]])
    # logits 0.6, 0.8, -0.6 at tau 0.5 -> 1.2, 1.6, -1.2; item 0's class
    want = -(1.2 - math.log(math.exp(1.2) + math.exp(1.6) + math.exp(-1.2)))
    got = bank_softmax_loss(f, torch.tensor([0]), keys, temperature=0.5)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_bank_softmax_is_pml_ntxent_against_the_bank():
    g = torch.Generator().manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(20, 6, generator=g), dim=1)
    f = torch.nn.functional.normalize(torch.randn(5, 6, generator=g), dim=1)
    idx = torch.tensor([3, 7, 0, 19, 11])
    ours = bank_softmax_loss(f, idx, keys, temperature=0.1)
    theirs = NTXentLoss(temperature=0.1)(f, idx, ref_emb=keys, ref_labels=torch.arange(20))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_bank_nce_by_hand():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    f = torch.tensor([[0.8, 0.6]])
    noise = torch.tensor([[1, 2]])
    tau, log_z = 0.5, 1.3
    pn = 2 / 4  # m / N

    def p(j: int) -> float:
        return math.exp(float(f[0] @ keys[j]) / tau - log_z)

    want = -(
        math.log(p(0) / (p(0) + pn))
        + math.log(1 - p(1) / (p(1) + pn))
        + math.log(1 - p(2) / (p(2) + pn))
    )
    got = bank_nce_loss(f, torch.tensor([0]), keys, noise, tau, log_z)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_bank_running_average_is_renormalised():
    bank = MemoryBank(_unit([[1.0, 0.0], [0.0, 1.0]]))
    bank.update_momentum(torch.tensor([1]), _unit([[1.0, 0.0]]), momentum=0.5)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(bank.keys.numpy(), [[1.0, 0.0], [s, s]], rtol=1e-6)


def test_instdisc_trains_every_image_once_per_epoch_and_moves_the_bank():
    data = digits("train", image_size=16).per_class(6, seed=0)
    m = get_method("instdisc", epochs=1, **TINY)
    s = m.structure(np.eye(len(data), 4, dtype=np.float32), 0)
    batches = m.batches(s, np.random.default_rng(0))
    assert sorted(np.concatenate([b["indices"] for b in batches]).tolist()) == list(range(30))
    emb = torch.nn.functional.normalize(torch.randn(len(batches[0]["indices"]), 4), dim=1)
    before = s.bank.keys.clone()
    m.batch_loss(emb, batches[0], s)
    idx = torch.as_tensor(batches[0]["indices"])
    want = torch.nn.functional.normalize(0.5 * before[idx] + 0.5 * emb, dim=1)
    torch.testing.assert_close(s.bank.keys[idx], want)
    rest = torch.ones(30, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(s.bank.keys[rest], before[rest])
    nce = get_method("instdisc", objective="nce", nce_k=5, **TINY)
    b = nce.batches(nce.structure(np.eye(30, 4, dtype=np.float32), 0), np.random.default_rng(0))
    assert b[0]["noise"].shape == (8, 5)


def test_cluster_uniform_probabilities_give_each_cluster_the_same_mass():
    assign = np.array([0, 0, 0, 0, 1, 2, 2, 4, 4, 4])  # cluster 3 empty
    p = cluster_uniform_probabilities(assign)
    mass = np.bincount(assign, weights=p)
    np.testing.assert_allclose(mass[[0, 1, 2, 4]], 0.25)
    assert p.sum() == pytest.approx(1.0)


def test_pseudo_class_count_rule():
    assert [pseudo_class_count(n) for n in (10, 300, 2500, 10**6)] == [2, 10, 83, 1000]


def test_deepcluster_reinitialises_its_head_each_round_and_drops_it_after_fit():
    data = digits("train", image_size=16).per_class(10, seed=0)
    m = get_method("deepcluster", rounds=2, clusters=4, **TINY)
    m._head = torch.nn.Linear(m.encoder.dim, 4)
    w0 = m._head.weight.detach().clone()
    s = m.structure(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32), 0)
    assert not torch.equal(w0, m._head.weight) and s.assign.shape == (50,)
    assert set(np.unique(s.assign)) <= set(range(4))
    m.fit(data)
    assert m._head is None and m.extra_module() is None
    rounds = [h for h in m.history_ if h["stage"] == "deepcluster" and h["epoch"] == 0]
    assert len(rounds) == 2 and 0 <= rounds[1]["structure/nmi_previous"] <= 1


# ---- STML -------------------------------------------------------------------------------------


def _brute_contextual(w: np.ndarray, same: np.ndarray, k: int) -> np.ndarray:
    """STML's W_C from its definition, with Python sets (no matrix tricks)."""
    n = len(w)
    w = np.where(same, 1.0, w)
    near = [list(np.argsort(-w[i], kind="stable")[:k]) for i in range(n)]
    recip = [{j for j in near[i] if i in near[j]} for i in range(n)]
    tilde = np.zeros((n, n))
    for i in range(n):
        for j in recip[i]:
            tilde[i, j] = len(recip[i] & recip[j]) / len(recip[i])
    half = int(np.around(k / 2))
    hat = np.array([tilde[near[i][:half]].mean(axis=0) for i in range(n)])
    return (hat + hat.T) / 2


def test_contextual_similarity_equals_brute_force_on_a_hand_made_neighbourhood():
    # two views each of 3 images: items (0,3), (1,4), (2,5); distinct similarities, no ties
    w = np.array(
        [
            [1.0, 0.9, 0.1, 0.5, 0.8, 0.2],
            [0.9, 1.0, 0.3, 0.7, 0.6, 0.15],
            [0.1, 0.3, 1.0, 0.25, 0.35, 0.4],
            [0.5, 0.7, 0.25, 1.0, 0.45, 0.05],
            [0.8, 0.6, 0.35, 0.45, 1.0, 0.55],
            [0.2, 0.15, 0.4, 0.05, 0.55, 1.0],
        ]
    )
    image = np.array([0, 1, 2, 0, 1, 2])
    same = image[:, None] == image[None, :]
    for k in (2, 3, 4):
        got = contextual_similarity(torch.tensor(w), torch.tensor(same), k).numpy()
        np.testing.assert_allclose(got, _brute_contextual(w, same, k), atol=1e-12)
    # by hand for k = 2: N(i) = {i, twin}, all reciprocal, so W_C is the same-image indicator
    got = contextual_similarity(torch.tensor(w), torch.tensor(same), 2).numpy()
    np.testing.assert_allclose(got, same.astype(float))


def test_relaxed_contrastive_by_hand_on_three_points():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # distances: 01 = 3, 02 = 4, 12 = 5; row means (0+3+4)/3, (3+0+5)/3, (4+5+0)/3
    d = np.array([[0, 3, 4], [3, 0, 5], [4, 5, 0]], float)
    dn = d / d.mean(axis=1, keepdims=True)
    w = np.array([[0, 1.0, 0.25], [0.5, 0, 0], [0.25, 0, 0]])
    want = (
        sum(
            w[i, j] * dn[i, j] ** 2 + (1 - w[i, j]) * max(0.0, 1.0 - dn[i, j]) ** 2
            for i in range(3)
            for j in range(3)
            if i != j
        )
        / 6
    )
    got = relaxed_contrastive(x, torch.tensor(w, dtype=torch.float32), delta=1.0)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_mean_normalised_distances_are_scipys_over_their_row_mean_with_finite_gradients():
    from scipy.spatial.distance import cdist

    g_ = torch.Generator().manual_seed(4)
    x = torch.randn(6, 1024, generator=g_, dtype=torch.float64)
    x[3] = x[1]  # two views that came out identical
    x.requires_grad_(True)
    d = mean_normalised_distances(x)
    ref = cdist(x.detach().numpy(), x.detach().numpy())
    np.testing.assert_allclose(d.detach().numpy(), ref / ref.mean(axis=1, keepdims=True), atol=1e-6)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_self_distillation_is_the_rowwise_kl_and_leaves_g_alone():
    g_ = torch.Generator().manual_seed(3)
    f = torch.randn(5, 4, generator=g_, requires_grad=True)
    g = torch.randn(5, 7, generator=g_, requires_grad=True)

    def rows(x):
        d = torch.cdist(x, x)
        return d / d.mean(dim=1, keepdim=True)

    p = torch.softmax(-rows(g), dim=1)
    q = torch.softmax(-rows(f), dim=1)
    want = (p * (p.log() - q.log())).sum(dim=1).mean()
    got = self_distillation(f, g)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert g.grad is None and f.grad is not None


def test_teacher_similarity_by_hand():
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: (1,0), (0,1): squared distance 2
    w = teacher_similarity(t, sigma=3.0)
    np.testing.assert_allclose(w.numpy(), [[1, math.exp(-2 / 3)], [math.exp(-2 / 3), 1]], rtol=1e-6)


def test_stml_batches_hold_queries_with_their_neighbours_as_two_views():
    m = get_method("stml", neighbours=2, batch_size=12, progress=False)
    nbr = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4], [7, 0], [6, 1]])
    batches = m.batches(NeighbourStructure(neighbours=nbr), np.random.default_rng(0))
    seen = set()
    for b in batches:
        half = len(b["indices"]) // 2
        images = b["indices"][:half]
        assert np.array_equal(b["indices"][half:], images)  # the second view of each
        assert len(set(images)) == half <= 6
        seen |= set(images.tolist())
    assert seen == set(range(8))
    q = batches[0]["indices"][0]
    assert set(nbr[q]) <= set(batches[0]["indices"].tolist())  # 3 of the batch's 6 images


def test_stml_teacher_is_an_ema_of_the_student():
    from labelfree.nets.heads import EmbeddingNet

    m = get_method("stml", momentum=0.75, progress=False)
    net = EmbeddingNet("small", dim=8, width=0.25)
    m.prepare_net(net)
    teacher = m._extra["teacher"]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    m._update_teacher(net)
    for k, v in teacher.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * net.state_dict()[k])
    assert all(not p.requires_grad for p in teacher.parameters())


# ---- Exemplar-CNN -----------------------------------------------------------------------------


def test_gradient_energy_by_hand():
    img = np.zeros((1, 2, 3, 3), np.uint8)
    img[0, :, 2, :] = 30  # luma: [[0, 0, 30], [0, 0, 30]]
    # vertical diffs all 0; horizontal diffs [0, 30] per row: mean of squares 450
    assert gradient_energy(img).tolist() == [450.0]


def test_exemplar_seeds_are_the_busiest_images_and_each_class_gets_its_views():
    data = digits("train", image_size=16).per_class(6, seed=0)
    m = get_method("exemplar-cnn", surrogates=10, views=3, epochs=1, **TINY)
    m.fit(data)
    energy = gradient_energy(data.images)
    assert set(m._seeds) == set(np.argsort(-energy)[:10])
    batches = m.batches(m.structure(np.zeros((30, 2)), 0), np.random.default_rng(0))
    classes = np.concatenate([b["classes"] for b in batches])
    assert np.bincount(classes).tolist() == [3] * 10
    for b in batches:
        assert np.array_equal(b["indices"], m._seeds[b["classes"]])
