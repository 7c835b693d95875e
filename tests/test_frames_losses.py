"""Losses of the object-frame methods (seed 004 Ch.4–7) on hand-built inputs."""

from __future__ import annotations

import math

import pytest
import torch

from labelfree.losses.frames import (
    alignment_loss,
    alignment_loss_quadratic,
    cell_grid,
    dense_loss,
    diversity_loss,
    evc_reconstruct,
    group_min_dense_loss,
    mirror_correspondence,
    reflect_labels,
    rotate_labels,
    soft_argmax,
    spatial_softmax,
)


def sphere_code(pts: torch.Tensor, h: int, w: int, alpha: float = 30.0) -> torch.Tensor:
    """A label per point on the unit sphere (scaled by alpha): longitude from x, latitude from y,
    centred so that the mirror x ↦ w − 1 − x flips the sign of the first coordinate only."""
    tx = (pts[..., 0] - (w - 1) / 2) / w * 2.0
    ty = (pts[..., 1] - (h - 1) / 2) / h * 2.0
    code = torch.stack(
        [torch.sin(tx), torch.cos(tx) * torch.sin(ty), torch.cos(tx) * torch.cos(ty)]
    )
    return alpha * code  # (3, ...)


def code_map(h: int, w: int, G: torch.Tensor | None = None, **kw) -> torch.Tensor:
    """(1, 3, h, w) embedding whose cell u carries the code of G[u] (of u itself by default)."""
    pts = cell_grid(h, w) if G is None else G
    return sphere_code(pts, h, w, **kw).reshape(1, 3, h, w)


def test_soft_argmax_of_a_delta():
    maps = torch.full((1, 2, 5, 6), -1e4)
    maps[0, 0, 3, 1] = 0.0
    maps[0, 1, 0, 5] = 0.0
    pts = soft_argmax(spatial_softmax(maps))
    assert torch.allclose(pts, torch.tensor([[[1.0, 3.0], [5.0, 0.0]]]))


def test_alignment_linear_equals_quadratic():
    g = torch.Generator().manual_seed(0)
    p = spatial_softmax(torch.randn(3, 4, 6, 7, generator=g))
    p2 = spatial_softmax(torch.randn(3, 4, 6, 7, generator=g))
    G = torch.rand(3, 42, 2, generator=g) * 7
    lin = alignment_loss(p, p2, G, scale=3.5)
    quad = alignment_loss_quadratic(p, p2, G, scale=3.5)
    assert lin.item() == pytest.approx(quad.item(), rel=1e-5)
    # zero exactly when both maps are deltas at corresponding points
    d = torch.zeros(1, 1, 6, 7)
    d[0, 0, 2, 3] = 1
    d2 = torch.zeros(1, 1, 6, 7)
    d2[0, 0, 4, 1] = 1
    G = cell_grid(6, 7)[None].clone()
    G[0, 2 * 7 + 3] = torch.tensor([1.0, 4.0])
    assert alignment_loss(d, d2, G).item() == pytest.approx(0.0, abs=1e-6)
    assert alignment_loss(d, d, G).item() == pytest.approx((3 - 1) ** 2 + (2 - 4) ** 2)


def test_diversity_loss_extremes():
    k = 4
    disjoint = torch.zeros(2, k, 8, 8)
    for r, (i, j) in enumerate([(0, 0), (0, 5), (6, 1), (7, 7)]):
        disjoint[:, r, i, j] = 1.0
    assert diversity_loss(disjoint, m=2).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.zeros(2, k, 8, 8)
    same[:, :, 3, 3] = 1.0
    assert diversity_loss(same, m=2).item() == pytest.approx(k - 1)
    # two deltas in the same 2×2 pooling cell count as one place
    near = disjoint.clone()
    near[:, 1] = 0
    near[:, 1, 1, 1] = 1.0
    assert diversity_loss(near, m=2).item() == pytest.approx(1.0)
    # a map size not divisible by m: a delta in a partial border window still counts once
    border = torch.zeros(1, 2, 9, 9)
    border[0, 0, 8, 8] = 1.0  # alone in the 1×1 corner window
    border[0, 1, 0, 0] = 1.0
    assert diversity_loss(border, m=2).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", ["dist", "log"])
def test_dense_loss_minimal_for_equivariant_embedding(loss):
    # float64 throughout: halving the confidence of the saturated labeller (α = 30) raises the
    # loss by only ~1.5e-5 of its value, within ~100× of float32 rounding over the cells.
    # (With p(v|u) ∝ exp(α·sim) and sim decreasing in ‖v − G[u]‖, the expected distance falls
    # strictly as α grows: its derivative in α is −Cov(distance, sim) < 0.)
    h = w = 10
    grid = cell_grid(h, w, dtype=torch.float64)
    G = grid[None] + torch.tensor([1.5, -0.5], dtype=torch.float64)  # sub-cell shift
    mask = (G[..., 0] <= w - 1) & (G[..., 1] >= 0)
    phi2 = code_map(h, w, grid)
    equiv = code_map(h, w, G[0])  # Φ_u(x) = Φ_{G[u]}(x′): perfectly equivariant
    best = dense_loss(equiv, phi2, G, mask, loss=loss).item()
    shifted = code_map(h, w, G[0] + torch.tensor([1.0, 0.0], dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    noisy = equiv + 3.0 * torch.randn(equiv.shape, generator=gen, dtype=torch.float64)
    assert best < dense_loss(shifted, phi2, G, mask, loss=loss).item()
    assert best < dense_loss(noisy, phi2, G, mask, loss=loss).item()
    assert best < dense_loss(0.5 * equiv, phi2, G, mask, loss=loss).item()  # less confident


def test_dense_loss_chunks_and_gradients_agree():
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(2, 5, 6, 6, generator=g, requires_grad=True)
    phi2 = torch.randn(2, 5, 6, 6, generator=g, requires_grad=True)
    G = torch.rand(2, 36, 2, generator=g) * 5
    mask = torch.rand(2, 36, generator=g) > 0.3
    for loss in ("dist", "log"):
        a = dense_loss(phi, phi2, G, mask, loss=loss, chunk=7)
        ga = torch.autograd.grad(a, (phi, phi2))
        b = dense_loss(phi, phi2, G, mask, loss=loss, chunk=4096)
        gb = torch.autograd.grad(b, (phi, phi2))
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
        assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gb, strict=True))


def test_dense_dist_loss_by_hand():
    """Two cells, one-hot-ish labels: L_dist = Σ_v ‖v − G[u]‖^γ p(v|u) written out."""
    phi = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, D=2, h=1, w=2)
    G = torch.tensor([[[0.25, 0.0], [1.0, 0.0]]])
    logits = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    p = logits.softmax(-1)
    d = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    want = (p * d**0.5).sum(-1).mean()
    assert dense_loss(phi, phi, G, gamma=0.5).item() == pytest.approx(want.item(), rel=1e-6)
    want_log = -torch.log(0.75 * p[0, 0] + 0.25 * p[0, 1]) - torch.log(p[1, 1])
    assert dense_loss(phi, phi, G, loss="log").item() == pytest.approx(
        want_log.item() / 2, rel=1e-5
    )


def test_mirror_equivariance_of_a_symmetric_embedding():
    """For a labeller with Φ(mirror x)_v = R Φ(x)_{m(v)} (R reflects label coordinate 1), the
    mirrored pair costs exactly what the plain pair costs; a labeller without that symmetry
    does not."""
    h = w = 9
    G = cell_grid(h, w)[None] + torch.tensor([0.6, 0.3])
    phi = code_map(h, w, G[0])  # Φ(x), equivariant with Φ(x′)
    phi2 = code_map(h, w)  # Φ(x′)
    assert torch.allclose(
        code_map(h, w, mirror_correspondence(cell_grid(h, w), w))[0, 0], -phi2[0, 0], atol=1e-5
    )
    # Φ(mirror x′)_v = R Φ(x′)_{m(v)}
    phi2_m = reflect_labels(code_map(h, w, mirror_correspondence(cell_grid(h, w), w)))
    Gm = mirror_correspondence(G, w)
    plain = dense_loss(phi, phi2, G)
    mirrored = dense_loss(reflect_labels(phi), phi2_m, Gm)
    assert mirrored.item() == pytest.approx(plain.item(), rel=1e-4)
    # without reflecting the query labels the mirrored pair is badly matched
    assert dense_loss(phi, phi2_m, Gm).item() > 2 * plain.item()
    # an asymmetric labeller (code shifted in x) breaks the mirror identity
    skew = code_map(h, w, cell_grid(h, w) + torch.tensor([2.0, 0.0]))
    skew_x = code_map(h, w, G[0] + torch.tensor([2.0, 0.0]))
    skew_m = code_map(h, w, mirror_correspondence(cell_grid(h, w), w) + torch.tensor([2.0, 0.0]))
    assert (
        dense_loss(reflect_labels(skew_x), skew_m, Gm).item() > dense_loss(skew_x, skew, G).item()
    )


def test_group_min_loss_is_invariant_to_the_symmetry_rotation():
    h = w = 8
    G = cell_grid(h, w)[None] + 0.3
    phi, phi2 = code_map(h, w, G[0]), code_map(h, w)
    base = group_min_dense_loss(phi, phi2, G, 4)
    # the labeller's frame rotated by a quarter turn: one group element undoes it
    rotated = group_min_dense_loss(rotate_labels(phi, math.pi / 2), phi2, G, 4)
    assert rotated.item() == pytest.approx(base.item(), rel=1e-4)
    assert dense_loss(rotate_labels(phi, math.pi / 2), phi2, G).item() > base.item()
    assert base.item() == pytest.approx(dense_loss(phi, phi2, G).item(), rel=1e-5)


def test_evc_reconstruction():
    h = w = 6
    phi = code_map(h, w, alpha=40.0)
    # reconstructing from the image itself with sharp labels gives the labels back
    assert torch.allclose(evc_reconstruct(phi, phi), phi, atol=1e-2 * 40)
    # a set of auxiliary images: the softmax runs over all their pixels together
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, h, w, generator=g)
    aux = torch.randn(2, 2, 3, h, w, generator=g)
    got = evc_reconstruct(a, aux, chunk=5)
    flat = aux.transpose(1, 2).reshape(2, 3, -1)
    att = (a.reshape(2, 3, -1).transpose(1, 2) @ flat).softmax(-1)
    want = (att @ flat.transpose(1, 2)).transpose(1, 2).reshape(2, 3, h, w)
    assert torch.allclose(got, want, atol=1e-5)
