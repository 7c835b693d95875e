"""Trainable DeepMatching (seed 004 Ch.3): the layers against a brute-force recursion, gradients,
the structured hinge, reciprocal verification, densification, metrics and the descriptor."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from labelfree.evaluate.deepmatching import decode, densify, match_metrics, reciprocal
from labelfree.losses.deepmatching import structured_hinge
from labelfree.nets.deepmatching import MatchDescriptor, MatchPyramid, correlate, dense_hog

INF = float("inf")


def _descriptors(b, c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(b, c, h, w, generator=g, dtype=torch.float64) + 0.05
    return f / f.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------- brute force (plain Python)


def _brute_q0(f0, f1, radius, levels, nu, border):
    """Q_0 of one pair by explicit loops and the chapter's memoised best-path recursion."""
    c_, h, w = len(f0), len(f0[0]), len(f0[0][0])
    radii = [radius]
    for _ in range(levels):
        radii.append(math.ceil(radii[-1] / 2))
    grid = [[(i, j) for i in range(h) for j in range(w)]]
    grid += [[(i, j) for i in range(h - 1) for j in range(w - 1)] for _ in range(levels)]
    s = [{}]
    for i, j in grid[0]:
        kk = 2 * radius + 1
        tab = [[0.0] * kk for _ in range(kk)]
        for a in range(kk):
            for c in range(kk):
                y, x = i + a - radius, j + c - radius
                if 0 <= y < h and 0 <= x < w:
                    tab[a][c] = sum(f0[ch][i][j] * f1[ch][y][x] for ch in range(c_))
        s[0][(i, j)] = tab

    def children(lvl, p):
        i, j = p
        if lvl == 0:
            return [(i + a, j + b) for a in (0, 1) for b in (0, 1)]
        d = 2 ** (lvl - 1)
        return [(i + ey * d, j + ex * d) for ey, ex in ((-1, -1), (-1, 1), (1, 1), (1, -1))]

    switch = []
    for lvl in range(levels):
        r, rn = radii[lvl], radii[lvl + 1]
        pad, kk, kn = 1 + 2 * rn - r, 2 * r + 1, 2 * rn + 1
        half, sw = {}, {}
        for p in grid[lvl]:
            vals, sws = [[0.0] * kn for _ in range(kn)], [[None] * kn for _ in range(kn)]
            for k1 in range(kn):
                for k2 in range(kn):
                    best, arg = None, None
                    for u in range(3):
                        for v in range(3):
                            row, col = 2 * k1 + u - pad, 2 * k2 + v - pad
                            if 0 <= row < kk and 0 <= col < kk:
                                val = s[lvl][p][row][col]
                                if best is None or val > best:
                                    best, arg = val, (row, col)
                    vals[k1][k2], sws[k1][k2] = best, arg
            half[p], sw[p] = vals, sws
        switch.append(sw)
        here = set(grid[lvl])
        nxt = {}
        for p in grid[lvl + 1]:
            kids = [q for q in children(lvl, p) if q in here]
            denom = len(kids) if border == "inside" else 4
            nxt[p] = [
                [max(sum(half[q][a][c] for q in kids) / denom, 1e-8) ** nu[lvl] for c in range(kn)]
                for a in range(kn)
            ]
        s.append(nxt)

    parents = []
    for lvl in range(levels):
        par = {p: [] for p in grid[lvl]}
        for big in grid[lvl + 1]:
            for q in children(lvl, big):
                if q in par:
                    par[q].append(big)
        parents.append(par)
    memo = {}

    def q_rec(lvl, p, a, c):
        if lvl == levels:
            return s[lvl][p][a][c]
        key = (lvl, p, a, c)
        if key not in memo:
            best = -INF
            kn = 2 * radii[lvl + 1] + 1
            for k1 in range(kn):
                for k2 in range(kn):
                    if switch[lvl][p][k1][k2] == (a, c):
                        for big in parents[lvl][p]:
                            best = max(best, q_rec(lvl + 1, big, k1, k2))
            memo[key] = s[lvl][p][a][c] + best
        return memo[key]

    kk = 2 * radius + 1
    return torch.tensor(
        [
            [[[q_rec(0, (i, j), a, c) for c in range(kk)] for a in range(kk)] for j in range(w)]
            for i in range(h)
        ],
        dtype=torch.float64,
    )


@pytest.mark.parametrize("border", ["inside", "zero"])
@pytest.mark.parametrize("radius", [3, 4])
def test_pyramid_equals_brute_force_recursion(border, radius):
    f0, f1 = _descriptors(2, 4, 5, 6, seed=radius), _descriptors(2, 4, 5, 6, seed=10 + radius)
    nu = (1.375, 1.25, 1.75)  # exact in float32, so the float32 buffer matches the reference
    net = MatchPyramid(levels=3, radius=radius, nu=nu, border=border).double()
    q0 = net(f0, f1)
    assert q0.shape == (2, 5, 6, 2 * radius + 1, 2 * radius + 1)
    for b in range(2):
        ref = _brute_q0(f0[b].tolist(), f1[b].tolist(), radius, 3, nu, border)
        got = q0[b]
        assert torch.equal(torch.isinf(got), torch.isinf(ref))
        assert torch.isfinite(ref).any() and torch.isinf(ref).any()
        fin = torch.isfinite(ref)
        assert torch.allclose(got[fin], ref[fin], rtol=0, atol=1e-9)
        assert torch.equal(got.reshape(5, 6, -1).argmax(-1), ref.reshape(5, 6, -1).argmax(-1))


@pytest.mark.parametrize("tile", [1, 4, 32])
def test_correlation_by_dot_products(tile):
    f0, f1 = _descriptors(2, 3, 5, 9, seed=5), _descriptors(2, 3, 5, 9, seed=6)
    got = correlate(f0, f1, radius=3, tile=tile)
    assert got.shape == (2, 5, 9, 7, 7)
    want = torch.zeros(2, 5, 9, 7, 7, dtype=torch.float64)
    for b, i, j, a, c in itertools.product(range(2), range(5), range(9), range(7), range(7)):
        y, x = i + a - 3, j + c - 3
        if 0 <= y < 5 and 0 <= x < 9:
            want[b, i, j, a, c] = sum(
                f0[b, ch, i, j].item() * f1[b, ch, y, x].item() for ch in range(3)
            )
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert (got[:, 0, :, :3] == 0).all() and (got[:, :, -1, :, -3:] == 0).all()
    assert torch.allclose(got, correlate(f0, f1, radius=3, tile=9), rtol=0, atol=1e-12)


def test_border_modes_differ():
    f0, f1 = _descriptors(1, 4, 5, 6, seed=3), _descriptors(1, 4, 5, 6, seed=4)
    a = MatchPyramid(levels=3, radius=3, border="inside").double()(f0, f1)
    z = MatchPyramid(levels=3, radius=3, border="zero").double()(f0, f1)
    assert not torch.allclose(torch.nan_to_num(a, neginf=0), torch.nan_to_num(z, neginf=0))


# ---------------------------------------------------------------- gradients


def test_gradcheck_through_the_loss():
    f0, f1 = _descriptors(1, 3, 4, 5, seed=7), _descriptors(1, 3, 4, 5, seed=8)
    f0.requires_grad_(True)
    f1.requires_grad_(True)
    net = MatchPyramid(levels=2, radius=2, learn_nu=True).double()
    nu = torch.tensor([1.4, 1.3], dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    truth = (torch.rand(1, 4, 5, 2, generator=g, dtype=torch.float64) - 0.5) * 4
    valid = torch.rand(1, 4, 5, generator=g) > 0.2

    def fn(a, b, n, sigma):
        q0 = functional_call(net, {"nu": n}, (a, b))
        return structured_hinge(q0, truth, valid, radius=2, sigma=sigma)[0]

    assert fn(f0, f1, nu, 0.0).item() > 0
    assert torch.autograd.gradcheck(lambda a, b, n: fn(a, b, n, 0.0), (f0, f1, nu))
    assert torch.autograd.gradcheck(lambda a, b, n: fn(a, b, n, 0.8), (f0, f1, nu))
    assert isinstance(net.nu, torch.nn.Parameter)
    assert not isinstance(MatchPyramid(levels=2).nu, torch.nn.Parameter)


# ---------------------------------------------------------------- structured hinge


def _q_two_points():
    q = torch.tensor(
        [
            [[0.1, 0.5, 0.2], [0.3, 0.9, -INF], [0.4, 0.0, 0.7]],
            [[0.2, 0.0, 1.5], [0.6, 0.1, 0.3], [-INF, 0.8, 0.4]],
        ],
        dtype=torch.float64,
    )
    return q.view(1, 1, 2, 3, 3)


def test_structured_hinge_by_hand():
    q0 = _q_two_points()
    truth = torch.tensor([[[[0.2, -0.4], [0.6, -0.7]]]], dtype=torch.float64)  # cells (0,0), (1,-1)
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    loss, n = structured_hinge(q0, truth, valid, radius=1)
    # p0: truth score 0.9: terms 1 + Q - 0.9 for the 7 finite q != truth
    p0 = 0.2 + 0.6 + 0.3 + 0.4 + 0.5 + 0.1 + 0.8
    # p1: truth cell (row 0, col 2), score 1.5: relu(1 + Q - 1.5)
    p1 = 0.0 + 0.0 + 0.1 + 0.0 + 0.0 + 0.3 + 0.0
    assert n == 2
    assert loss.item() == pytest.approx((p0 + p1) / 2, abs=1e-12)

    sigma = 0.7
    loss_s, _ = structured_hinge(q0, truth, valid, radius=1, sigma=sigma)
    want = 0.0
    for pi, (tx, ty) in enumerate([(0.2, -0.4), (0.6, -0.7)]):
        ref = q0[0, 0, pi, 1, 1] if pi == 0 else q0[0, 0, pi, 0, 2]
        for a in range(3):
            for c in range(3):
                val = q0[0, 0, pi, a, c].item()
                if math.isfinite(val):
                    g = math.exp(-((c - 1 - tx) ** 2 + (a - 1 - ty) ** 2) / (2 * sigma**2))
                    want += max(0.0, 1 - g + val - ref.item())
    assert loss_s.item() == pytest.approx(want / 2, abs=1e-12)
    assert abs(loss_s.item() - loss.item()) > 0.1


def test_structured_hinge_skips():
    q0 = _q_two_points()
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    p0 = 0.2 + 0.6 + 0.3 + 0.4 + 0.5 + 0.1 + 0.8
    outside = torch.tensor([[[[0.0, 0.0], [1.6, 0.0]]]], dtype=torch.float64)  # rounds to dx = 2
    loss, n = structured_hinge(q0, outside, valid, radius=1)
    assert n == 1 and loss.item() == pytest.approx(p0, abs=1e-12)
    at_inf = torch.tensor([[[[0.0, 0.0], [-1.0, 1.4]]]], dtype=torch.float64)  # cell of -inf
    loss, n = structured_hinge(q0, at_inf, valid, radius=1)
    assert n == 1 and loss.item() == pytest.approx(p0, abs=1e-12)
    invalid = torch.tensor([[[False, True]]])
    loss, n = structured_hinge(q0, outside, invalid, radius=1)
    assert n == 0 and loss.item() == 0.0
    q = q0.clone().requires_grad_(True)
    structured_hinge(q, outside, invalid, radius=1)[0].backward()
    assert torch.equal(q.grad, torch.zeros_like(q))
    with pytest.raises(ValueError):
        structured_hinge(q0, outside, valid, radius=2)


# ---------------------------------------------------------------- decoding and metrics


def test_decode_and_reciprocal():
    q0 = torch.full((1, 1, 3, 3, 3), -1.0, dtype=torch.float64)
    q0[0, 0, 0, 1, 2] = 3.0  # p = (0,0) -> (dx, dy) = (1, 0): target cell (0, 1)
    q0[0, 0, 1, 1, 1] = 5.0  # p' = (0,1) -> (0, 0): same target (0, 1), higher score
    q0[0, 0, 2, 0, 0] = 2.0  # p'' = (0,2) -> (-1, -1): target (-1, 1), outside the map
    q0[0, 0, 1, 0, 0] = -INF
    disp, score = decode(q0)
    assert disp[0, 0].tolist() == [[1, 0], [0, 0], [-1, -1]]
    assert score[0, 0].tolist() == [3.0, 5.0, 2.0]
    assert reciprocal(q0, disp)[0, 0].tolist() == [False, True, True]
    q0[0, 0, 1, 1, 1] = 3.0  # a tie is still verified (>=)
    assert reciprocal(q0, disp)[0, 0].tolist() == [True, True, True]
    q0[0, 0, 0, 0, 2] = 4.0  # p = (0,0) at offset (1, -1) also reaches (-1, 1), beating p''
    assert reciprocal(q0, disp)[0, 0].tolist() == [True, True, False]


def test_densify_by_hand():
    disp = torch.zeros(1, 3, 4, 2, dtype=torch.long)
    ver = torch.zeros(1, 3, 4, dtype=torch.bool)
    for (i, j), d in {(0, 0): (1, 1), (0, 2): (2, 0), (2, 3): (-1, 0), (2, 0): (5, 5)}.items():
        disp[0, i, j] = torch.tensor(d)
        ver[0, i, j] = True
    disp[0, 1, 1] = torch.tensor([7, 7])  # not verified: must be replaced
    out, ok = densify(disp, ver, radius=1)
    want = [
        [(1, 1), (1, 1), (2, 0), (2, 0)],  # (0,1): tie (0,0)/(0,2) -> raster order, (0,0)
        [(1, 1), (1, 1), (2, 0), (-1, 0)],  # (1,1): nearest (0,0),(0,2),(2,0) at √2 -> (0,0)
        [(5, 5), (5, 5), (-1, 0), (-1, 0)],
    ]
    assert ok.all()
    assert out[0].tolist() == [[list(v) for v in row] for row in want]
    score = torch.zeros(1, 3, 4)
    score[0, 0, 2] = 1.0
    out, _ = densify(disp, ver, radius=1, score=score)
    assert out[0, 0, 1].tolist() == [2, 0] and out[0, 1, 1].tolist() == [2, 0]
    far = torch.zeros(1, 3, 4, dtype=torch.bool)
    far[0, 0, 0] = True
    out, ok = densify(disp, far, radius=1)
    assert ok[0].tolist() == [[True, True, False, False], [True, True, False, False], [False] * 4]


def test_match_metrics_by_hand():
    truth = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    disp = torch.tensor([[[0, 0], [1, 0], [4, 5], [0, 0], [9, 9]]])
    valid = torch.tensor([[True, True, True, True, False]])
    matched = torch.tensor([[True, True, True, False, True]])
    m = match_metrics(disp, truth, valid, stride=2, matched=matched)
    assert m == {"acc@2": 0.5, "acc@5": 0.5, "acc@10": 0.75, "epe_px": 4.0}
    m = match_metrics(disp.double(), truth, valid, stride=1, thresholds=(1,))
    assert m == {"acc@1": 0.75, "epe_px": pytest.approx((0 + 1 + 5 + 0) / 4)}


# ---------------------------------------------------------------- end-to-end decoding


@pytest.mark.parametrize("border", ["inside", "zero"])
def test_identity_and_shift_decode_exactly(border):
    f0 = _descriptors(1, 16, 12, 14, seed=21)
    net = MatchPyramid(levels=3, radius=4, border=border).double()
    disp, _ = decode(net(f0, f0))
    assert (disp == 0).all()
    extra = _descriptors(1, 16, 13, 16, seed=22)
    f1 = extra[:, :, :12, :14].clone()
    f1[:, :, 1:, 2:] = f0[:, :, :-1, :-2]  # f0 at (i, j) reappears at (i + 1, j + 2)
    disp, _ = decode(net(f0, f1))
    inner = disp[0, :-1, :-2]  # every cell whose true target lies inside the map
    assert (inner[..., 0] == 2).all() and (inner[..., 1] == 1).all()


# ---------------------------------------------------------------- descriptor


def test_descriptor_is_hog_at_init_and_unit_norm():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 24, 30)
    img[:, :, :8, :8] = 0.5  # a flat patch gives the uniform unit vector
    hog = dense_hog(img)
    assert hog.shape == (2, 32, 12, 15)
    assert (hog >= 0).all()
    assert torch.allclose(hog.norm(dim=1), torch.ones(2, 12, 15), rtol=0, atol=1e-6)
    assert torch.allclose(hog[:, :, 1, 1], torch.full((2, 32), 32**-0.5), rtol=0, atol=1e-6)
    assert hog[:, :, 6, 8].std() > 0.01
    learned = MatchDescriptor(learned=True, width=16)
    out = learned(img)
    assert torch.allclose(out, hog, rtol=0, atol=1e-6)
    assert torch.equal(MatchDescriptor()(img), hog)
    assert learned.config() == {"learned": True, "width": 16}
    with torch.no_grad():
        learned.conv2.bias.fill_(0.1)
    out = learned(img)
    assert not torch.allclose(out, hog, atol=1e-3)
    assert (out >= 0).all() and torch.allclose(out.norm(dim=1), torch.ones(2, 12, 15), atol=1e-6)
    # an edge: horizontal gradient only -> the bins near 0 degrees dominate
    edge = torch.zeros(1, 3, 8, 8)
    edge[..., 4:] = 1.0
    d = dense_hog(edge)[0, :, 2, 1].view(4, 8).sum(0)
    assert d.argmax().item() == 0


def test_deepmatching_method_trains_evaluates_and_draws(tmp_path):
    """The method on the shared loop: ν moves, the evaluation scores the learned and the
    untrained pyramid on the same held-out pairs, EPE is marked lower-is-better."""
    from labelfree.data.imageset import DataError
    from labelfree.data.synth_sprites import sprite_videos
    from labelfree.evaluate.results import Metrics
    from labelfree.methods import get_method

    data = sprite_videos("train", n_videos=2, frames=3, size=32)
    opts = dict(epochs=1, steps=2, progress=False, device="cpu", radius=4, levels=2)
    m = get_method("deepmatching", descriptors="hog", **opts).fit(data)
    nu = m.net_.pyramid.nu.detach()
    assert nu.shape == (2,) and not torch.allclose(nu, torch.full((2,), 1.4))
    metrics = m.evaluate(sprite_videos("test", n_videos=2, frames=3, size=32))
    assert set(metrics.representations) == {"deepmatching", "untrained (HOG, ν 1.4)"}
    back = Metrics.from_json(metrics.to_json())
    assert not back.better_is_higher("epe_px") and back.better_is_higher("acc@2")
    for row in metrics.representations.values():
        assert 0 <= row["acc@2"] <= row["acc@5"] <= row["acc@10"] <= 1
    m.draw_evaluation(tmp_path, data, metrics)
    assert (tmp_path / "matches.png").stat().st_size > 0
    with pytest.raises(DataError, match="nothing to train"):
        get_method("deepmatching", descriptors="hog", learn_nu=False, **opts).fit(data)


def test_held_out_pairs_truth_transports_content():
    """On an image whose colour is its own pixel coordinate, x′ sampled at a cell centre moved by
    the pair's truth shows the same coordinate as x at that centre."""
    from labelfree.data.imageset import ImageSet
    from labelfree.frames.matching_probe import held_out_pairs

    side = 32
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    img = np.stack([xs * 4 + 60, ys * 4 + 60, np.full_like(xs, 128)], -1)  # linear, no clipping
    data = ImageSet(images=img.astype(np.uint8)[None].repeat(3, 0), labels=None, name="ramp")
    pairs = held_out_pairs(data, strength=1.0, seed=0, n=3)
    x, x2, truth, valid = pairs["x"], pairs["x2"], pairs["truth"], pairs["valid"]
    hm = side // 2
    ci, cj = np.mgrid[0:hm, 0:hm]
    centres = torch.tensor(np.stack([2 * cj + 0.5, 2 * ci + 0.5], -1), dtype=torch.float32)

    def sample(im, pix):  # bilinear at pixel coordinates (x, y), align_corners=False convention
        grid = (2 * pix + 1) / side - 1
        return torch.nn.functional.grid_sample(im[None], grid[None], align_corners=False)[0]

    checked = 0
    for b in range(3):
        here = sample(x[b], centres)
        target = centres + 2 * truth[b]
        there = sample(x2[b], target)
        # targets between the outer pixel centres, where x′ can be interpolated at all
        inner = valid[b] & ((target >= 0) & (target <= side - 1)).all(-1)
        diff = (here - there)[:2].abs().amax(0)[inner]
        assert float(diff.max()) < 2.0 / 255, b  # uint8 ramp steps are 4/255
        checked += int(inner.sum())
    assert checked > 300
