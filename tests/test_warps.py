"""Warps of the object-frame methods: convention G[u] = location in x′ of pixel u of x."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kornia.geometry.transform import warp_points_tps

from labelfree.frames.warps import (
    WarpParams,
    apply_backward,
    make_pair,
    pixel_grid,
    random_warp,
    to_normalised,
    to_pixels,
    transport_points,
)


def _blob(size: int, centre: tuple[float, float], sigma: float = 1.2) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
        indexing="ij",
    )  # fmt: skip
    g = torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return g.expand(3, -1, -1)


def _centroid(img: torch.Tensor) -> np.ndarray:
    """Intensity centroid (x, y) of a (3, H, W) image around its peak."""
    m = img[0]
    h, w = m.shape
    peak = int(m.argmax())
    py, px = divmod(peak, w)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    win = ((ys - py).abs() <= 5) & ((xs - px).abs() <= 5)
    wts = m * win
    return np.array([(wts * xs).sum() / wts.sum(), (wts * ys).sum() / wts.sum()])


def test_pixel_normalised_round_trip():
    pix = torch.tensor([[[0.0, 0.0], [63.0, 31.0], [10.5, 7.25]]])
    n = to_normalised(pix, 32, 64)
    # pixel centre 0 of a 64-wide image sits at −1 + 1/64 (align_corners=False)
    assert n[0, 0, 0].item() == pytest.approx(-1 + 1 / 64)
    assert torch.allclose(to_pixels(n, 32, 64), pix, atol=1e-5)


def test_identity_warp_at_zero_strength():
    img = torch.rand(2, 3, 16, 16)
    pair = make_pair(img, strength=0.0)
    assert torch.allclose(pair.x, img, atol=1e-4)
    assert torch.allclose(pair.x2, img, atol=1e-4)
    grid = pixel_grid(16, 16).expand(2, -1, -1)
    assert torch.allclose(pair.G(grid), grid, atol=1e-3)
    assert pair.valid.all()


def test_tps_matches_kornia():
    """Our batched TPS equals kornia's warp_points_tps (kernel r² log r² = 2 × kornia's)."""
    w = random_warp(3, strength=3.0, generator=torch.Generator().manual_seed(1))
    p = torch.rand(3, 40, 2, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ident = torch.zeros(3, 3, 2)
    ident[:, 1, 0] = 1
    ident[:, 2, 1] = 1
    ref = warp_points_tps(p, w.centers.expand(3, -1, -1), 2 * w.weights, ident)
    ref = ref @ w.affine[:, 1:] + w.affine[:, None, 0]
    assert torch.allclose(w(p), ref, atol=1e-5)
    lat = w.on_lattice()
    assert (lat(p) - w(p)).abs().max() * 32 < 0.5  # < 0.5 px at 64 px even at 3× strength


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keypoint_warp_agrees_with_image_warp(seed):
    """G applied to the blob centre found in x lands on the blob centre found in x′."""
    size = 64
    img = _blob(size, (30.3, 33.6))[None].repeat(2, 1, 1, 1)
    img[1] = _blob(size, (25.0, 38.2))
    pair = make_pair(img, strength=1.5, generator=torch.Generator().manual_seed(seed))
    for b in range(2):
        c = torch.tensor(_centroid(pair.x[b]), dtype=torch.float32)[None, None]
        c2 = _centroid(pair.x2[b])
        g = pair.G(c.expand(2, -1, -1))[b, 0].numpy()
        assert np.linalg.norm(g - c2) < 0.25  # sub-pixel


def test_transport_points_inverts_the_backward_map():
    size = 64
    q = (22.4, 40.7)
    img = _blob(size, q)[None]
    w = random_warp(1, strength=1.5, generator=torch.Generator().manual_seed(3))
    out = apply_backward(img, w)
    moved = transport_points(torch.tensor([[q]]), w, size, size)
    back = to_pixels(w(to_normalised(moved, size, size)), size, size)[0, 0]
    assert torch.allclose(back, torch.tensor(q), atol=1e-3)  # an exact inverse
    assert np.linalg.norm(moved[0, 0].numpy() - _centroid(out[0])) < 0.4  # and the image agrees


def test_valid_mask_marks_points_leaving_the_image():
    params = WarpParams(translation=0.0, rotation_deg=0.0, scale=0.0, tps_small=0, tps_large=0)
    img = torch.rand(1, 3, 16, 16)
    pair = make_pair(img, params)
    pair.t2.values[:, 0] += 0.5  # shift G right by a quarter of the image
    g = pair.field(1)
    assert (g[0, :, 0] > 15.5).any()
