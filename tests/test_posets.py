"""The poset loss (seed 000 Eq. 2–4), Posets' grouping/medoids/assignment step, and short fits
of Posets and CliqueCNN through the common Method API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from labelfree.losses.clique import clique_batch_loss
from labelfree.losses.poset import poset_loss, posets_objective, surrogate_loss
from labelfree.methods import get_method, load_model
from labelfree.structure.posets import medoids, refine_assignments


def test_poset_loss_equals_hand_computation():
    emb = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    reps = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    nearest = torch.tensor([[0, 1], [0, 1]])
    sigma, gamma = 0.8, 0.3
    out = poset_loss(emb, reps, nearest, sigma, gamma)
    k = 1 / (2 * sigma**2)
    losses = []
    for e, near in zip(emb.tolist(), nearest.tolist(), strict=True):
        d2 = [(e[0] - r[0]) ** 2 + (e[1] - r[1]) ** 2 for r in reps.tolist()]
        num = sum(math.exp(-(d2[z] - gamma) * k) for z in near)
        den = sum(math.exp(-d * k) for d in d2)
        losses.append(-math.log(num / den))
    assert out.item() == pytest.approx(sum(losses) / 2, rel=1e-6)


def test_poset_loss_with_one_nearest_is_cross_entropy_on_distances():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 5, generator=g)
    reps = torch.randn(4, 5, generator=g)
    nearest = torch.cdist(emb, reps).argmin(1, keepdim=True)
    sigma = 0.7
    logits = -torch.cdist(emb, reps).pow(2) / (2 * sigma**2)
    ce = F.cross_entropy(logits, nearest[:, 0])
    assert poset_loss(emb, reps, nearest, sigma, 0.0).item() == pytest.approx(ce.item(), rel=1e-5)
    # Z = C' (every class in the numerator) and γ = 0 gives log 1 = 0.
    all_cols = torch.arange(4).repeat(7, 1)
    assert poset_loss(emb, reps, all_cols, sigma).item() == pytest.approx(0.0, abs=1e-6)


def test_surrogate_loss_and_objective_combination():
    g = torch.Generator().manual_seed(1)
    a, u, reps = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(3, 3)
    t = torch.tensor([0, 2, 1, 1, 0])
    near = torch.tensor([[0, 1], [2, 0], [1, 2], [0, 2]])
    l1 = surrogate_loss(a, reps, t, 0.5)
    ref = F.cross_entropy(F.normalize(a, dim=1) @ F.normalize(reps, dim=1).T / 0.5, t)
    assert l1.item() == pytest.approx(ref.item(), rel=1e-6)
    total = posets_objective(a, t, u, near, reps, 0.6, lam=0.25, gamma=0.1, temperature=0.5)
    expect = l1 + 0.25 * poset_loss(u, reps, near, 0.6, 0.1)
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)


def test_clique_batch_loss_leave_one_out_by_hand():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    lab = torch.tensor([0, 0, 1, 1])
    e = F.normalize(emb, dim=1)
    # sample 0: own prototype = sample 1, other = mean of samples 2, 3
    own = e[1]
    other = F.normalize((e[2] + e[3]) / 2, dim=0)
    l0 = F.cross_entropy(torch.stack([e[0] @ own, e[0] @ other])[None] / 0.1, lab[:1])
    full = clique_batch_loss(emb, lab, 0.1)
    logits = []
    for i in range(4):
        row = []
        for c in (0, 1):
            m = [j for j in range(4) if lab[j] == c and j != i]
            row.append(e[i] @ F.normalize(e[m].mean(0), dim=0))
        logits.append(torch.stack(row))
    ref = F.cross_entropy(torch.stack(logits) / 0.1, lab)
    assert full.item() == pytest.approx(ref.item(), rel=1e-5)
    assert l0.item() == pytest.approx(
        F.cross_entropy(torch.stack(logits)[:1] / 0.1, lab[:1]).item()
    )


def test_medoids_match_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    y = rng.integers(-1, 3, size=30)
    med = medoids(x, y, 3)
    for c in range(3):
        m = np.flatnonzero(y == c)
        cost = [sum(np.linalg.norm(x[i] - x[j]) for j in m) for i in m]
        assert med[c] == m[int(np.argmin(cost))]


def test_refine_assignments_keeps_size_bound_and_fixes_a_wrong_label():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    y_true = np.repeat(np.arange(3), 10)
    x = centres[y_true] + 0.05 * rng.normal(size=(30, 3))
    y = y_true.copy()
    y[3] = 1  # one item of class 0 wrongly in class 1
    y[[28, 29]] = -1  # unassigned stay unassigned
    new = refine_assignments(x, y, min_class=4, steps=200, k=5)
    assert new[3] == 0
    assert (new[[28, 29]] == -1).all()
    vals, counts = np.unique(new[new >= 0], return_counts=True)
    assert (counts >= 4).all()


@pytest.fixture(scope="module")
def small_digits():
    from labelfree.data.bundled import digits

    return digits("train").per_class(30, seed=0)


def test_posets_fit_builds_posets_and_round_trips(small_digits, tmp_path):
    m = get_method(
        "posets",
        start="feature-head",
        features="pixels",
        epochs=1,
        rounds=2,
        batch_size=64,
        progress=False,
        g_steps=20,
    ).fit(small_digits)
    rec = [h for h in m.history_ if "structure/classes" in h]
    assert len(rec) == 2  # both rounds rebuilt the structure
    assert rec[0]["structure/classes"] >= 2
    assert 0 < rec[0]["structure/assigned"] < 1
    assert 0.5 <= rec[0]["structure/positive_tp_rate"] <= 1
    z = m.embed(small_digits)
    m.save(tmp_path / "p.pt")
    m2 = load_model(str(tmp_path / "p.pt"))
    assert m2.n_nearest == m.n_nearest
    assert np.allclose(m2.embed(small_digits), z, atol=1e-5)


def test_cliquecnn_fit_logs_clique_purity(small_digits):
    m = get_method(
        "cliquecnn",
        start="feature-head",
        features="pixels",
        epochs=1,
        n_batches=10,
        cliques_per_batch=5,
        k_clique=6,
        batch_size=64,
        progress=False,
    ).fit(small_digits)
    rec = m.history_[0]
    assert rec["structure/cliques"] >= 5
    assert 0.5 <= rec["structure/positive_tp_rate"] <= 1
    assert 0 < rec["structure/covered"] <= len(small_digits)
    assert m.embed(small_digits).shape == (len(small_digits), 64)


def test_posets_batches_when_every_item_is_assigned():
    """No unassigned samples (no posets): batches hold classes only and the loss is L1 alone."""
    from labelfree.methods.posets import Posets, PosetsStructure

    y = np.array([0, 0, 0, 1, 1, 1])
    structure = PosetsStructure(
        y=y,
        assignments=y.copy(),
        medoids=np.array([1, 4]),
        unassigned=np.zeros(0, dtype=np.int64),
        nearest=np.zeros((0, 2), dtype=np.int64),
        members=[np.flatnonzero(y == c) for c in range(2)],
    )
    m = Posets.from_options(batch_size=8, per_class=2)
    batches = m.batches(structure, np.random.default_rng(0))
    assert batches and all(b["nearest"].shape == (0, 2) for b in batches)
    b = batches[0]
    assert set(b["indices"][: b["n_reps"]]) == {1, 4}
    emb = torch.nn.functional.normalize(torch.randn(len(b["indices"]), 4), dim=1)
    assert torch.isfinite(m.batch_loss(emb, b, structure))


def test_cliquecnn_ltp_groups_on_pooled_similarities_from_round_one():
    """With ``ltp`` = p, round ≥ 1 cliques are those of the LTP stack (Eq. 3.9); round 0 is not
    pooled; the option needs frame sequences."""
    from labelfree.data.imageset import DataError, ImageSet
    from labelfree.methods.cliquecnn import CliqueCNN
    from labelfree.structure.temporal import ltp_stack

    rng = np.random.default_rng(0)
    video, frame = np.repeat(np.arange(4), 15), np.tile(np.arange(15), 4)
    centres = rng.normal(size=(6, 8))
    reps = centres[(frame // 3) % 6] + 0.6 * rng.normal(size=(60, 8))
    opts = {"k_clique": 4, "min_clique": 2, "n_batches": 4, "cliques_per_batch": 3}
    pooled, plain = CliqueCNN.from_options(ltp=2, **opts), CliqueCNN.from_options(**opts)
    pooled._sequences = (video, frame)
    ref = plain.structure(ltp_stack(reps, video, frame, p=2), 1)
    got = pooled.structure(reps, 1)
    assert [sorted(map(list, c)) for c in [got.clique_members]] == [
        sorted(map(list, c)) for c in [ref.clique_members]
    ]
    unpooled = plain.structure(reps, 1).clique_members
    assert sorted(map(list, unpooled)) != sorted(map(list, got.clique_members))
    r0 = pooled.structure(reps, 0).clique_members
    assert sorted(map(list, r0)) == sorted(map(list, plain.structure(reps, 0).clique_members))
    images = ImageSet(np.zeros((60, 8, 8, 3), np.uint8), name="no-sequences")
    with pytest.raises(DataError):
        CliqueCNN.from_options(ltp=2, start="feature-head", features="pixels", **opts).fit(images)
