"""ROUL (seed 003): order matrices, losses against hand computations, re-ranking energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labelfree.evaluate.rerank import roul_energy, roul_rerank
from labelfree.losses.orders import (
    marginal_variance,
    moc_loss,
    ms_mining,
    multi_similarity,
    order_loss,
    roc_loss,
)
from labelfree.nets.order_net import OrderNet
from labelfree.structure.orders import (
    AUG,
    OTHER_CORE,
    SAME_CORE,
    UNKNOWN,
    kmeans_cores,
    order_matrix,
    sample_groups,
)


# ---- structure ----------------------------------------------------------------------------------
def test_order_matrix_hand_case_and_antisymmetry():
    roles = np.array([AUG, AUG, SAME_CORE, OTHER_CORE, UNKNOWN])
    o = order_matrix(roles)
    expected = np.array(
        [
            [0, 0, 0, 1, 0],  # augmentation vs other core: +1 (Eq. 3); vs aug / own core: 0
            [0, 0, 0, 1, 0],
            [0, 0, 0, 1, 0],  # own core vs other core: +1 (Eq. 4)
            [-1, -1, -1, 0, 0],
            [0, 0, 0, 0, 0],  # outside every core: no confident order
        ]
    )
    np.testing.assert_array_equal(o, expected)
    np.testing.assert_array_equal(o, -o.T)
    o2 = order_matrix(roles, aug_vs_core=1)
    assert o2[0, 2] == 1 and o2[2, 0] == -1 and o2[0, 1] == 0
    np.testing.assert_array_equal(o2, -o2.T)


def test_kmeans_cores_radius_and_groups():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(scale=0.5, size=(40, 2)) for c in centres]).astype("f4")
    s = kmeans_cores(x, 3, core_fraction=1 / 3)
    c = s["centres"]
    min_cc = min(np.linalg.norm(c[i] - c[j]) for i in range(3) for j in range(i + 1, 3))
    assert s["delta"] == pytest.approx(min_cc / 3, rel=1e-5)
    d = np.linalg.norm(x - c[s["assign"]], axis=1)
    np.testing.assert_array_equal(s["core"] >= 0, d <= s["delta"] + 1e-6)
    # each core lies within one true blob
    for k in np.unique(s["core"][s["core"] >= 0]):
        assert len(np.unique(np.flatnonzero(s["core"] == k) // 40)) == 1
    # top-up: at least 30 % of each cluster, nearest first
    s2 = kmeans_cores(x, 3, core_fraction=1e-6, min_share=0.3)
    for k in range(3):
        members = np.flatnonzero(s2["assign"] == k)
        core = np.flatnonzero(s2["core"] == k)
        assert len(core) == math.ceil(0.3 * len(members))
        assert d[core].max() <= np.sort(d[members])[len(core) - 1] + 1e-6
    groups, roles = sample_groups(s2["core"], 10, 2, 3, 2, rng)
    assert groups.shape == (10, 8) and list(roles) == [AUG] * 2 + [SAME_CORE] * 3 + [OTHER_CORE] * 2
    core = s2["core"]
    for g in groups:
        assert (g[1:3] == g[0]).all()
        assert (core[g[3:6]] == core[g[0]]).all() and (g[3:6] != g[0]).all()
        assert (core[g[6:]] != core[g[0]]).all() and (core[g[6:]] >= 0).all()


# ---- losses ----------------------------------------------------------------------------------------
def _eq7(sims, pos, neg, lam_p=2.0, lam_n=40.0, delta=0.5):
    """Seed 003 Eq. 7 written out per anchor: log(1 + Σ_P e^{−λ_P(s−δ)})/λ_P + log(1 + Σ_N
    e^{λ_N(s−δ)})/λ_N, averaged over anchors."""
    out = []
    for i in range(sims.shape[0]):
        lp = sum(
            torch.exp(-lam_p * (sims[i, j] - delta)) for j in range(sims.shape[1]) if pos[i, j]
        )
        ln = sum(torch.exp(lam_n * (sims[i, j] - delta)) for j in range(sims.shape[1]) if neg[i, j])
        out.append(torch.log(1 + lp) / lam_p + torch.log(1 + ln) / lam_n)
    return torch.stack(out).mean()


def test_multi_similarity_equals_eq7_in_value_and_gradient():
    """The loss (pytorch-metric-learning's, fed the pairs and the bank as reference embeddings)
    against Eq. 7 written out, after the same mining; gradients w.r.t. the network's raw output
    (which the method L2-normalises) agree too."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(10, 6, dtype=torch.float64, generator=g).requires_grad_()
    bank = torch.nn.functional.normalize(
        torch.randn(15, 6, dtype=torch.float64, generator=g), dim=1
    )
    pos = torch.rand(10, 25, generator=g) < 0.15
    pos[:, :10] &= ~torch.eye(10, dtype=torch.bool)
    neg = (torch.rand(10, 25, generator=g) < 0.5) & ~pos

    def loss(ours: bool) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.nn.functional.normalize(raw, dim=1)
        keys = torch.cat([emb, bank])
        sims = emb @ keys.T
        kp, kn = ms_mining(sims, pos, neg, 0.1)
        out = multi_similarity(emb, keys, kp, kn) if ours else _eq7(sims, kp, kn)
        return out, torch.autograd.grad(out, raw)[0]

    (a, ga), (b, gb) = loss(True), loss(False)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    assert torch.allclose(ga, gb, atol=1e-12)


def test_multi_similarity_mining_and_variance_hand_case():
    cos = torch.tensor([0.9, 0.3, 0.6, 0.1], dtype=torch.float64)
    keys = torch.stack([cos, (1 - cos**2).sqrt()], 1)  # unit vectors at these cosines to (1, 0)
    anchor = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    sims = anchor @ keys.T
    pos = torch.tensor([[True, True, False, False]])
    neg = torch.tensor([[False, False, True, True]])
    kp, kn = ms_mining(sims, pos, neg, 0.1)
    # negatives kept: s > min_pos − ε = 0.2 → only 0.6; positives kept: s < max_neg + ε = 0.7 → 0.3
    assert kp.tolist() == [[False, True, False, False]]
    assert kn.tolist() == [[False, False, True, False]]
    hand = math.log(1 + math.exp(-2 * (0.3 - 0.5))) / 2 + math.log(1 + math.exp(40 * 0.1)) / 40
    # two copies of the anchor (pytorch-metric-learning returns 0 for a batch of one pair)
    two = multi_similarity(anchor.repeat(2, 1), keys, kp.repeat(2, 1), kn.repeat(2, 1))
    assert float(two) == pytest.approx(hand)
    all_p, all_n = ms_mining(sims, pos, neg, None)
    assert torch.equal(all_p, pos) and torch.equal(all_n, neg)
    v = marginal_variance(sims, pos, neg)  # var{0.9, 0.3} + var{0.6, 0.1}
    assert float(v[0]) == pytest.approx(0.09 + 0.0625)


def test_roc_and_moc_equal_hand_computations():
    dist = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)
    o = torch.tensor([[[0, 1, 1], [-1, 0, -1], [-1, 1, 0]]], dtype=torch.float64)
    a = 0.1
    d = dist[0].tolist()
    # Eq. 5: positive entries (0,1), (0,2), (2,1)
    hand_roc = sum(math.exp(a * (d[n] - d[m])) for n, m in [(0, 1), (0, 2), (2, 1)])
    assert float(roc_loss(dist, o, a)) == pytest.approx(hand_roc)
    hand_hinge = math.exp(a * (d[2] - d[1])) - 1  # the only violated pair: (2,1) with Δ > 0
    assert float(roc_loss(dist, o, a, form="hinge")) == pytest.approx(hand_hinge)
    # Eq. 6: Δ(n,m) < 0 for (0,1), (0,2), (1,2); weights [1 − O]
    hand_moc = 0.0
    for n, m in [(0, 1), (0, 2), (1, 2)]:
        delta = d[n] - d[m]
        hand_moc += (1 - o[0, n, m].item()) * math.log(1 - delta) / math.log(1 / a) * (-delta)
    assert hand_moc > 0
    assert float(moc_loss(dist, o, a)) == pytest.approx(hand_moc)
    assert float(order_loss(o * 0.5, o)) == pytest.approx(float((0.25 * o**2).mean()))


def test_roc_moc_zero_or_minimal_when_orders_and_distances_agree():
    dist = torch.tensor([[0.1, 0.4, 1.9]], dtype=torch.float64)  # Δ(0,2) = −1.8: no log of ≤ 0
    agree = torch.tensor([[[0, 1, 1], [-1, 0, 1], [-1, -1, 0]]], dtype=torch.float64)
    assert float(moc_loss(dist, agree)) == 0.0
    assert float(roc_loss(dist, agree, form="hinge")) == 0.0
    flipped = -agree  # the reverse orders: both losses must rise
    assert float(moc_loss(dist, flipped)) > 0
    assert float(roc_loss(dist, flipped)) > float(roc_loss(dist, agree))
    zero = torch.zeros_like(agree)  # no confident order: L_ROC has nothing to enforce
    assert float(roc_loss(dist, zero)) == 0.0


def test_moc_gradient_moves_predictions_towards_metric_order():
    dist = torch.tensor([[0.1, 0.8]], dtype=torch.float64)
    pred = torch.zeros(1, 2, 2, dtype=torch.float64, requires_grad=True)
    moc_loss(dist, pred).backward()
    assert pred.grad[0, 0, 1] < 0  # descending raises Ô(0,1): C_0 is the closer one
    assert pred.grad[0, 1, 0] == 0


def test_order_net_is_antisymmetric_and_matches_concatenated_mlp():
    torch.manual_seed(0)
    net = OrderNet(4, hidden=6).double()
    a = torch.randn(2, 4, dtype=torch.float64)
    c = torch.randn(2, 3, 4, dtype=torch.float64)
    o = net(a, c)
    torch.testing.assert_close(o, -o.transpose(1, 2))
    # h(n, m) equals an MLP over the concatenation [A, C_n, C_m, A⊙C_n, A⊙C_m]
    w = torch.cat(
        [
            net.anchor.weight,
            net.first.weight[:, :4],
            net.second.weight[:, :4],
            net.first.weight[:, 4:],
            net.second.weight[:, 4:],
        ],
        dim=1,
    )
    g, n, m = 1, 0, 2
    x = torch.cat([a[g], c[g, n], c[g, m], a[g] * c[g, n], a[g] * c[g, m]])
    h = net.out(torch.relu(w @ x + net.anchor.bias))
    torch.testing.assert_close(net.scores(a, c)[g, n, m], h[0])


# ---- re-ranking --------------------------------------------------------------------------------
def _ranks(n_fixed: int, perm: np.ndarray) -> np.ndarray:
    r = np.zeros(n_fixed + len(perm))
    r[n_fixed + perm] = 1 + np.arange(len(perm))
    return r


def test_energy_hand_case():
    d = np.array([0.0, 0.2, 0.3])  # one augmentation then two results
    o = np.array([[0, 1, 1], [-1, 0, -1], [-1, 1, 0]], dtype=float)
    lam, a1 = 0.5, 2.0
    r = np.array([0, 1, 2])
    hand = 0.0
    for n, m in [(0, 1), (0, 2), (1, 2)]:
        hand += math.exp(a1 * (d[n] - d[m])) + lam * (1 - o[n, m])
    assert roul_energy(r, d, o, lam, a1) == pytest.approx(hand)
    # the orders say result 2 is closer: with a large λ the search swaps the two results
    perm = roul_rerank(d, o, lam=5.0, alpha1=a1, n_fixed=1)
    assert perm.tolist() == [1, 0]


@pytest.mark.parametrize("seed", range(5))
def test_rerank_never_raises_energy_and_lambda_zero_keeps_distance_order(seed):
    rng = np.random.default_rng(seed)
    n_fixed, m = 2, 12
    d = np.concatenate([rng.uniform(0, 0.1, n_fixed), np.sort(rng.uniform(0.2, 1.5, m))])
    s = rng.normal(size=(n_fixed + m, n_fixed + m))
    o = np.tanh(s - s.T)
    start = roul_energy(_ranks(n_fixed, np.arange(m)), d, o, 1.0, 1.0)
    perm = roul_rerank(d, o, lam=1.0, alpha1=1.0, n_fixed=n_fixed)
    assert sorted(perm.tolist()) == list(range(m))
    assert roul_energy(_ranks(n_fixed, perm), d, o, 1.0, 1.0) <= start + 1e-12
    # λ = 0: the distance order is already optimal and is kept
    assert roul_rerank(d, o, lam=0.0, alpha1=1.0, n_fixed=n_fixed).tolist() == list(range(m))
    # brute-force check on a small case that the result is a local minimum under swaps
    for i in range(m - 1):
        p2 = perm.copy()
        p2[[i, i + 1]] = p2[[i + 1, i]]
        e2 = roul_energy(_ranks(n_fixed, p2), d, o, 1.0, 1.0)
        assert e2 >= roul_energy(_ranks(n_fixed, perm), d, o, 1.0, 1.0) - 1e-12


# ---- end to end ---------------------------------------------------------------------------------
def test_fit_save_load_keeps_order_net_and_cli_rerank(shape_folders, tmp_path, monkeypatch, capsys):
    import json

    from PIL import Image

    from conftest import run_cli
    from labelfree.methods import load_model

    train_dir, eval_dir = shape_folders
    out = tmp_path / "run"
    fast = ["--start", "feature-head", "--features", "hog", "--epochs", "1", "--no-progress"]
    args = ["fit", "--data", train_dir, "--out", out, "--method", "roul", *fast]
    assert run_cli([*args, "-o", "rerank_m=6", "--image-size", "32"], monkeypatch) == 0, (
        capsys.readouterr().err
    )
    m = load_model(str(out / "model.pt"))
    assert m.name == "roul" and m.rerank_m == 6
    state = torch.load(out / "model.pt", weights_only=False)
    for k, v in m.order_net.state_dict().items():  # the order network travels with the model
        torch.testing.assert_close(v.cpu(), state["extra_state"][k])
    assert any(h.get("structure/core_coverage", 0) > 0 for h in m.history_)

    ev = ["evaluate", "--model", out, "--data", eval_dir, "--features", ""]
    assert run_cli([*ev, "--rerank", "roul", "--json", tmp_path / "m.json"], monkeypatch) == 0
    reps = json.loads((tmp_path / "m.json").read_text())["representations"]
    assert {"embedding", "embedding + roul"} <= set(reps)
    assert reps["embedding + roul"]["rerank_ms_per_query"] > 0

    idx = ["index", "--model", out, "--data", eval_dir, "--out", tmp_path / "idx"]
    assert run_cli(idx, monkeypatch) == 0
    q = tmp_path / "query.png"
    Image.fromarray(np.asarray(Image.open(next((eval_dir / "disc").iterdir())))[::-1]).save(q)
    search = ["search", "--index", tmp_path / "idx", "--query", q, "--json"]
    capsys.readouterr()
    assert run_cli([*search, "-k", "6"], monkeypatch) == 0
    top6 = json.loads(capsys.readouterr().out)[0]["results"]
    assert run_cli([*search, "-k", "5", "--rerank", "roul"], monkeypatch) == 0
    rr = json.loads(capsys.readouterr().out)[0]["results"]
    # a re-ordering of the cosine top M = 6, cut to k = 5
    assert len(rr) == 5 and {r["item"] for r in rr} <= {r["item"] for r in top6}

    # a model without an order network gets a clear error
    had = tmp_path / "had"
    args = ["fit", "--data", train_dir, "--out", had, "--method", "hadsell", *fast]
    assert run_cli(args, monkeypatch) == 0
    capsys.readouterr()
    code = run_cli(
        ["evaluate", "--model", had, "--data", eval_dir, "--rerank", "roul"], monkeypatch
    )
    assert code != 0 and "order network" in capsys.readouterr().err


def test_cooperative_training_routes_each_loss_to_its_own_network():
    from labelfree.losses.memory_bank import MemoryBank
    from labelfree.methods.roul import ROUL, ROULStructure

    rng = np.random.default_rng(0)
    n = 40
    core = np.repeat(np.arange(4), 10)
    core[::5] = -1  # some items outside every core
    m = ROUL.from_options(
        dim=6, batch_size=36, n_aug=2, n_same=2, n_other=2, cooperative="alternate"
    )
    roles = np.array([AUG, AUG, SAME_CORE, SAME_CORE, OTHER_CORE, OTHER_CORE])
    structure = ROULStructure(
        core=core,
        assign=np.repeat(np.arange(4), 10),
        bank=MemoryBank(torch.nn.functional.normalize(torch.randn(n, 6), dim=1)),
        roles=roles,
        orders=order_matrix(roles),
    )
    batch = m.batches(structure, rng)[0]
    assert len(batch["indices"]) <= 36 and batch["groups"].shape[1] == 7
    phi = m.extra_module()
    feats = torch.randn(len(batch["indices"]), 6, requires_grad=True)

    def grads(step):
        m._step = step
        phi.zero_grad()
        feats.grad = None
        m.batch_loss(feats, batch, structure).backward()
        has_phi = any(p.grad is not None and p.grad.abs().sum() > 0 for p in phi.parameters())
        return feats.grad is not None and feats.grad.abs().sum() > 0, has_phi

    assert grads(0) == (True, False)  # feature step: L_FEN + L_ROC, Φ fixed
    assert grads(1) == (False, True)  # order step: L_O + L_MOC, features fixed
    # no gradient at all (not zeros): AdamW would otherwise still move the feature network
    assert feats.grad is None
    m.cooperative = "joint"
    assert grads(0) == (True, True)
    # the memory bank holds the newest view of each batch item
    last = {int(i): k for k, i in enumerate(batch["indices"])}
    for i, k in last.items():
        torch.testing.assert_close(
            structure.bank.keys[i], torch.nn.functional.normalize(feats.detach()[k], dim=0)
        )
