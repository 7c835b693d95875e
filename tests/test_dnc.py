"""Divide & Conquer: slices normalised on their own, a cluster's batch training only its slice
and the backbone, learner identity kept by the Hungarian matching, class-balanced batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import MarginLoss

from labelfree.data.bundled import digits
from labelfree.data.imageset import DataError
from labelfree.losses.slices import PROXY_SCALE, slice_loss
from labelfree.methods import get_method
from labelfree.methods.dnc import DnCStructure
from labelfree.structure.partition import class_batches, match_clusters, overlap, pools_to_classes

TINY = dict(start="feature-head", features="pixels", epochs=1, batch_size=8, progress=False)


def _structure(n: int = 8, k: int = 4, split: bool = True) -> DnCStructure:
    return DnCStructure(learner=np.zeros(n, np.int64), targets=np.arange(n) // 2, split=split, k=k)


def test_each_slice_is_normalised_on_its_own():
    m = get_method("dnc", learners=4, dim=8, sampler="all")
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(8, 8, generator=g)
    batch = {"indices": np.arange(8), "learner": 1}
    base = m.batch_loss(raw, batch, _structure())
    scaled = raw.clone()
    scaled[:, 2:4] *= torch.linspace(0.5, 3.0, 8)[:, None]  # each row's slice rescaled
    scaled[:, 4:] = torch.randn(8, 4, generator=g)  # other slices changed entirely
    assert m.batch_loss(scaled, batch, _structure()).item() == pytest.approx(base.item(), rel=1e-6)


def test_a_clusters_batch_updates_only_its_slice_and_the_backbone():
    m = get_method("dnc", learners=4, dim=8, sampler="all")
    torch.manual_seed(0)
    backbone, head = torch.nn.Linear(5, 6), torch.nn.Linear(6, 8)
    x = torch.randn(8, 5)
    loss = m.batch_loss(
        head(torch.relu(backbone(x))), {"indices": np.arange(8), "learner": 2}, _structure()
    )
    assert loss.item() > 0
    loss.backward()
    rows = torch.zeros(8, dtype=torch.bool)
    rows[4:6] = True  # learner 2 of 4 owns columns 4..5 of the 8-d embedding
    assert torch.count_nonzero(head.weight.grad[~rows]) == 0  # exactly, not approximately
    assert torch.count_nonzero(head.bias.grad[~rows]) == 0
    assert torch.count_nonzero(head.weight.grad[rows]) > 0
    assert torch.count_nonzero(backbone.weight.grad) > 0


def test_unsplit_and_final_batches_train_the_full_embedding():
    m = get_method("dnc", learners=4, dim=8, sampler="all")
    torch.manual_seed(1)
    head = torch.nn.Linear(6, 8)
    loss = m.batch_loss(
        head(torch.randn(8, 6)), {"indices": np.arange(8), "learner": 3}, _structure(split=False)
    )
    loss.backward()
    assert (head.weight.grad.abs().sum(dim=1) > 0).all()


def test_margin_slice_loss_is_pml_margin_loss_on_the_normalised_slice():
    g = torch.Generator().manual_seed(2)
    z = torch.nn.functional.normalize(torch.randn(10, 4, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    ours = slice_loss(z, labels, "margin", 0.2, 1.2, "all")
    theirs = MarginLoss(margin=0.2, nu=0.0, beta=1.2)(z, labels)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_margin_loss_by_hand_on_three_points():
    # one triplet each way: a=(1,0), p=(0.6,0.8) (d=0.894), n=(-1,0) (d=2); beta 1.2, margin 0.2
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    d_ap = float(np.hypot(0.4, 0.8))
    d_pn = float(np.hypot(1.6, 0.8))
    # triplets (a,p,n) and (p,a,n): positive terms relu(d_ap - 1.2 + 0.2) = 0, negative terms
    # relu(1.2 - d_an + 0.2) = 0 for d=2, and relu(1.4 - 1.789) = 0: all zero ...
    assert slice_loss(z, labels, "margin", 0.2, 1.2, "all").item() == 0.0
    # ... until the margin grows: margin 0.5 makes both positive terms d_ap - 0.7 > 0
    want_pos = 2 * max(0.0, d_ap - 1.2 + 0.5)
    want_neg = max(0.0, 1.2 - 2.0 + 0.5) + max(0.0, 1.2 - d_pn + 0.5)
    got = slice_loss(z, labels, "margin", 0.5, 1.2, "all").item()
    # pytorch-metric-learning averages the summed terms over the triplets with a non-zero one
    n_active = 2
    assert got == pytest.approx((want_pos + want_neg) / n_active, rel=1e-5)


def test_hungarian_matching_keeps_learner_identity_under_relabelling():
    rng = np.random.default_rng(0)
    previous = rng.integers(0, 4, 200)
    noisy = np.where(rng.random(200) < 0.2, rng.integers(0, 4, 200), previous)
    want = match_clusters(previous, noisy, 4)
    for perm in itertools.permutations(range(4)):
        assert np.array_equal(match_clusters(previous, np.array(perm)[noisy], 4), want)
    # and it is the relabelling that keeps the most items with their learner (brute force)
    best = max(
        itertools.permutations(range(4)),
        key=lambda p: int(np.sum(np.array(p)[noisy] == previous)),
    )
    assert np.array_equal(want, np.array(best)[noisy])
    assert np.array_equal(match_clusters(None, noisy, 4), noisy)


def test_overlap_counts_items_in_both_clusters():
    a = np.array([0, 0, 1, 2, 2, 2])
    b = np.array([1, 1, 1, 0, 2, 2])
    assert overlap(a, b, 3).tolist() == [[0, 2, 0], [0, 1, 0], [1, 0, 2]]


def test_class_batches_hold_per_class_items_of_classes_inside_the_cluster():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    members = np.array([0, 1, 2, 3, 4, 5, 6, 7])  # class 2 has one member: never drawn
    rng = np.random.default_rng(0)
    batches = class_batches(members, labels, batch_size=6, per_class=3, rng=rng)
    assert len(batches) == 2  # ceil(8 / 6)
    for b in batches:
        assert set(b) <= set(members) and 5 not in b
        counts = np.bincount(labels[b], minlength=4)
        assert sorted(counts[counts > 0].tolist()) == [3, 3]
    assert class_batches(np.array([5, 6]), labels, 6, 3, rng) == []


def test_rounds_recluster_match_and_end_on_the_full_embedding():
    data = digits("train", image_size=16).per_class(8, seed=0)
    m = get_method("dnc", learners=2, dim=8, rounds=3, **TINY).fit(data)
    rounds = [h for h in m.history_ if h["stage"] == "dnc" and h["epoch"] == 0]
    assert len(rounds) == 3
    assert 0.0 <= rounds[1]["structure/learner_stability"] <= 1.0
    assert 0.0 < rounds[0]["structure/pseudo_purity"] <= 1.0
    z = m.embed(data)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    assert m.structure(np.zeros((10, 3)), 2).k == 1  # the last round: one group, full dim


def test_supervised_targets_need_labels_and_learners_must_divide_dim():
    data = digits("train", image_size=16).per_class(8, seed=0)
    unlabeled = data.subset(np.arange(len(data)))
    unlabeled.labels = None
    with pytest.raises(DataError, match="targets=labels"):
        get_method("dnc", targets="labels", **TINY).fit(unlabeled)
    with pytest.raises(DataError, match="learners=3"):
        get_method("dnc", learners=3, dim=8, **TINY).fit(data)


class _Ctx:
    """An EpochContext stand-in that counts the passes over the data it is asked for."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb, self.calls = emb, 0

    def embedding(self) -> np.ndarray:
        self.calls += 1
        return self.emb


def _two_groups() -> np.ndarray:
    e = np.zeros((8, 4), np.float32)
    e[:4, 0], e[4:, 1] = 1.0, 1.0
    return e + np.float32(0.01) * np.arange(32, dtype=np.float32).reshape(8, 4) / 32


@pytest.mark.parametrize("reembed", ["cached", "pass"])
def test_cached_reclustering_uses_training_time_embeddings_instead_of_a_pass(reembed):
    m = get_method("dnc", learners=2, dim=4, rounds=3, n_pseudo=2, sampler="all", reembed=reembed)
    m._n_items = 8
    m.prepare_net(torch.nn.Linear(2, 4))  # builds the bank (reembed=cached)
    g, first = _two_groups(), _Ctx(_two_groups())
    s0 = m.structure(g, 0, first)
    assert first.calls == 1
    assert set(s0.learner[:4]) != set(s0.learner[4:])
    # a batch moves items 0 and 1 into the second group
    moved = torch.from_numpy(_two_groups()[[4, 5]])
    m.batch_loss(moved, {"indices": np.array([0, 1]), "learner": 0}, s0)
    later = _Ctx(_two_groups())  # what a fresh pass would see: nothing moved
    s1 = m.structure(g, 1, later)
    if reembed == "cached":
        assert later.calls == 0
        np.testing.assert_array_equal(m.extra_module()["bank"].keys[:2].numpy(), moved.numpy())
        assert s1.learner[0] == s1.learner[1] == s1.learner[4] != s1.learner[2]
    else:
        assert later.calls == 1 and m.extra_module() is None
        assert s1.learner[0] == s1.learner[2] != s1.learner[4]


def test_items_outside_every_clique_are_never_drawn():
    m = get_method("dnc", learners=2, dim=4, per_class=2, batch_size=4)
    targets = np.array([0, 0, -1, 1, 1, -1, 2, 2, -1, 3, 3, -1])
    s = DnCStructure(learner=np.arange(12) // 6, targets=targets, split=True, k=2)
    drawn = np.concatenate([b["indices"] for b in m.batches(s, np.random.default_rng(0))])
    assert len(drawn) > 0 and (targets[drawn] >= 0).all()


def test_clique_targets_train_and_report_their_coverage():
    data = digits("train", image_size=16).per_class(8, seed=0)
    m = get_method("dnc", learners=2, dim=8, rounds=2, targets="cliques", **TINY).fit(data)
    first = next(h for h in m.history_ if h["stage"] == "dnc")
    assert 0.0 < first["structure/pseudo_coverage"] <= 1.0
    assert 0.0 < first["structure/pseudo_purity"] <= 1.0


def test_pools_become_classes_each_item_with_its_most_similar_anchor():
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]])
    anchors = np.array([0, 2])
    members = np.array([[1, 3], [3, 1]])  # both pools hold items 1 and 3
    lengths = np.array([2, 1])  # ... but pool 1 only its first: item 3
    got = pools_to_classes(anchors, members, lengths, x)
    # item 3 is in both: x3·x0 = 0.6 < x3·x2 = 0.8, so it joins anchor 2's pool; 4 is in none
    np.testing.assert_array_equal(got, [0, 0, 1, 1, -1])


def test_proxynca_slice_loss_by_formula_and_only_its_learners_proxies_move():
    m = get_method("dnc", learners=2, dim=4, loss="proxynca", n_pseudo=3)
    m._n_items = 6
    m.prepare_net(torch.nn.Linear(2, 4))
    proxies = m.extra_module()["proxies"]
    assert [p.proxies.shape for p in proxies] == [(3, 2), (3, 2), (3, 4)]
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(6, 4, generator=g)
    s = DnCStructure(
        learner=np.zeros(6, np.int64), targets=np.array([0, 0, 1, 1, 2, 2]), split=True, k=2
    )
    loss = m.batch_loss(emb, {"indices": np.arange(6), "learner": 1}, s)
    z = torch.nn.functional.normalize(emb[:, 2:], dim=1)
    p = torch.nn.functional.normalize(proxies[1].proxies, dim=1)
    logits = -PROXY_SCALE * torch.cdist(z, p).pow(2)
    want = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert proxies[1].proxies.grad is not None
    assert proxies[0].proxies.grad is None and proxies[2].proxies.grad is None


def test_proxynca_needs_a_known_class_count_and_features_need_an_image_start():
    data = digits("train", image_size=16).per_class(8, seed=0)
    with pytest.raises(DataError, match="loss=proxynca"):
        get_method("dnc", loss="proxynca", targets="cliques", **TINY).fit(data)
    with pytest.raises(DataError, match="cluster_on=features"):
        get_method("dnc", cluster_on="features", dim=8, learners=2, **TINY).fit(data)


@pytest.mark.parametrize(
    "opts",
    [
        {"loss": "proxynca", "targets": "kmeans", "start": "feature-head"},
        {"cluster_on": "features", "targets": "pools", "start": "distill"},
    ],
)
def test_dnc_options_train_and_leave_only_the_embedding_network(opts):
    data = digits("train", image_size=16).per_class(12, seed=0)
    tiny = {**TINY, "start": opts.pop("start"), "distill_epochs": 1, "cache": False}
    m = get_method("dnc", learners=2, dim=8, rounds=3, **tiny, **opts).fit(data)
    rounds = [h for h in m.history_ if h["stage"] == "dnc" and h["epoch"] == 0]
    assert len(rounds) == 3 and rounds[1]["structure/embed_seconds"] == 0.0  # no second pass
    assert m.extra_module() is None and m._hook is None
    assert np.isfinite(m.embed(data)).all()
