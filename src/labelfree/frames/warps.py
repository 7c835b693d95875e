"""Synthetic warps for object frames: random affine ∘ thin-plate spline (seed 004, Ch.4 §4.3).

One convention throughout (METHODS.md §6): a warp pair is ``(x, x′, G)`` where ``G[u]`` is the
location in ``x′`` of pixel ``u`` of ``x``. Coordinates are PIXEL coordinates ``(x, y)`` =
(column, row) with pixel centres at integers; the normalised coordinates used by ``grid_sample``
(``align_corners=False``) are ``n = (2p + 1) / size − 1``.

A :class:`Warp` is a *backward* map ``T`` on normalised coordinates: the warped image is
``warp(I)(u) = I(T(u))``. A pair is made from one source image ``I`` and two warps:
``x′ = I ∘ T₁`` and ``x = I ∘ T₁ ∘ T₂`` (each one resampling of ``I``), so that pixel ``u`` of
``x`` shows the point ``T₂(u)`` of ``x′`` and ``G = T₂`` exactly — a forward evaluation, no
inversion needed. ``T₁`` is drawn at half strength, as in the released code.

Released-code defaults (METHODS.md §6): a 10×10 control grid on [−1, 1]², kernel U(r) = r² log r²,
non-affine weights N(0, 0.001²) with a random half re-drawn from N(0, 0.01²) (we read the
published 0.001 / 0.01 as standard deviations), rotation σ = 5°, scale σ = 0.1 (log-normal
around 1), translation σ = 0.1 (normalised units). ``strength`` multiplies every σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class WarpParams:
    """The random draw of a warp family (all σ in the units of the module docstring)."""

    grid: int = 10
    rotation_deg: float = 5.0
    scale: float = 0.1
    translation: float = 0.1
    tps_small: float = 0.001
    tps_large: float = 0.01
    strength: float = 1.0


class Warp:
    """A batch of backward maps ``T`` (affine ∘ TPS) on normalised coordinates.

    ``affine``: (B, 3, 2) — row 0 the translation, rows 1–2 the linear part, so
    ``T_aff(p) = p @ A[1:] + A[0]``; ``weights``: (B, M, 2) TPS weights on ``centers`` (M, 2)
    for the kernel U(r) = r² log r².
    """

    def __init__(self, affine: torch.Tensor, centers: torch.Tensor, weights: torch.Tensor):
        self.affine, self.centers, self.weights = affine, centers, weights

    def __len__(self) -> int:
        return int(self.affine.shape[0])

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:
        """Map (B, P, 2) normalised points: the non-linear part first, then the affine map.

        The TPS sum Σ_i w_i U(‖p − c_i‖) is one batched matrix product here; kornia's
        ``warp_points_tps`` (same formula with U = ½ r² log r², checked against it in
        tests/test_warps.py) broadcasts a (B, P, M, 2) tensor and is ~10× slower at 64 px.
        """
        c = self.centers.to(pts).expand(pts.shape[0], -1, -1)
        d2 = (pts * pts).sum(-1)[..., None] + (c * c).sum(-1)[:, None] - 2 * pts @ c.transpose(1, 2)
        d2 = d2.clamp_min(0.0)
        bent = pts + (d2 * torch.log(d2 + 1e-20)) @ self.weights.to(pts)
        a = self.affine.to(pts)
        return bent @ a[:, 1:] + a[:, None, 0]

    def on_lattice(self, n: int = 33, extent: float = 2.0) -> LatticeWarp:
        """This warp sampled on an n×n lattice over [−extent, extent]² and interpolated
        bilinearly: a map of its own (so pairs built from it stay exactly consistent), within
        ~0.1 px of the TPS at 64 px (measured) and ~7× cheaper to evaluate densely."""
        lin = torch.linspace(-extent, extent, n)
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        lat = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1).expand(len(self), -1, -1)
        vals = self(lat).reshape(len(self), n, n, 2).permute(0, 3, 1, 2)
        return LatticeWarp(vals.contiguous(), extent)


class LatticeWarp:
    """A backward map given by its values on a regular lattice (bilinear in between)."""

    def __init__(self, values: torch.Tensor, extent: float):
        self.values, self.extent = values, extent

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __call__(self, pts: torch.Tensor) -> torch.Tensor:
        grid = (pts / self.extent)[:, :, None, :]
        out = F.grid_sample(
            self.values.to(pts), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        return out[..., 0].transpose(1, 2)


def random_warp(
    n: int,
    params: WarpParams | None = None,
    strength: float | None = None,
    generator: torch.Generator | None = None,
) -> Warp:
    """Draw ``n`` random affine ∘ TPS warps (seed 004 Ch.4 released-code defaults)."""
    p = params or WarpParams()
    s = p.strength if strength is None else strength

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    ang = randn(n) * math.radians(p.rotation_deg) * s
    scl = torch.exp(randn(n) * p.scale * s)
    trans = randn(n, 2) * p.translation * s
    cos, sin = torch.cos(ang) * scl, torch.sin(ang) * scl
    affine = torch.zeros(n, 3, 2)
    affine[:, 0] = trans
    # p @ [[c, s], [-s, c]] rotates the row vector p by the angle.
    affine[:, 1, 0], affine[:, 1, 1] = cos, sin
    affine[:, 2, 0], affine[:, 2, 1] = -sin, cos
    lin = torch.linspace(-1.0, 1.0, p.grid)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    centers = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)[None]
    m = centers.shape[1]
    w = randn(n, m, 2) * p.tps_small
    redraw = torch.rand(n, m, 1, generator=generator) < 0.5
    w = torch.where(redraw, randn(n, m, 2) * p.tps_large, w) * s
    return Warp(affine, centers, w)


def compose(first: Warp, second: Warp):
    """The backward map ``first ∘ second`` (apply ``second`` then ``first``) as a callable."""
    return lambda pts: first(second(pts))


# ---- coordinates ----------------------------------------------------------------------------------
def pixel_grid(h: int, w: int, stride: int = 1, device=None) -> torch.Tensor:
    """(h/stride · w/stride, 2) pixel coordinates (x, y) of the centres of a stride-``stride`` map.

    Output cell (i, j) of a map downsampled by ``stride`` covers input pixels
    ``stride·j … stride·j + stride − 1``; its centre is ``stride·j + (stride − 1)/2``.
    """
    ys = torch.arange(h // stride, device=device, dtype=torch.float32) * stride + (stride - 1) / 2
    xs = torch.arange(w // stride, device=device, dtype=torch.float32) * stride + (stride - 1) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def to_normalised(pix: torch.Tensor, h: int, w: int) -> torch.Tensor:
    size = torch.tensor([w, h], dtype=pix.dtype, device=pix.device)
    return (2 * pix + 1) / size - 1


def to_pixels(nrm: torch.Tensor, h: int, w: int) -> torch.Tensor:
    size = torch.tensor([w, h], dtype=nrm.dtype, device=nrm.device)
    return ((nrm + 1) * size - 1) / 2


def apply_backward(images: torch.Tensor, fn, padding_mode: str = "border") -> torch.Tensor:
    """``out(u) = images(fn(u))`` for a backward map ``fn`` on normalised (B, P, 2) points."""
    b, _, h, w = images.shape
    grid = to_normalised(pixel_grid(h, w, device=images.device), h, w).expand(b, -1, -1)
    src = fn(grid).view(b, h, w, 2)
    return F.grid_sample(
        images, src, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )


def transport_points(points: torch.Tensor, fn, h: int, w: int) -> torch.Tensor:
    """Pixel points (B, P, 2) of the *source* → their location in ``apply_backward(img, fn)``.

    The backward map has no closed-form inverse; solve ``fn(q) = p`` by Newton's method with the
    Jacobian from autograd (a few iterations reach 1e-5 px for these mild warps).
    """
    target = to_normalised(points, h, w).detach()
    q = target.clone()
    for _ in range(8):
        q = q.detach().requires_grad_(True)
        r = fn(q) - target
        jac = torch.zeros(*q.shape, 2, dtype=q.dtype)
        for k in range(2):
            (g,) = torch.autograd.grad(r[..., k].sum(), q, retain_graph=True)
            jac[..., k, :] = g
        step = torch.linalg.solve(jac, r.detach()[..., None])[..., 0]
        q = q.detach() - step
    return to_pixels(q.detach(), h, w)


@dataclass
class WarpPair:
    """``x``, ``x′`` (B, C, H, W) and the correspondence: ``G(pix)`` maps pixel points of ``x``
    (B, P, 2) to their location in ``x′``; ``valid`` (B, H, W) marks pixels of ``x`` that show a
    point of the source visible in ``x′``."""

    x: torch.Tensor
    x2: torch.Tensor
    t2: Warp | LatticeWarp
    valid: torch.Tensor

    def G(self, pix: torch.Tensor) -> torch.Tensor:
        h, w = self.x.shape[-2:]
        return to_pixels(self.t2(to_normalised(pix, h, w)), h, w)

    def field(self, stride: int = 1) -> torch.Tensor:
        """G at the centres of a stride-``stride`` map of ``x``: (B, H/s · W/s, 2) pixels of x′."""
        h, w = self.x.shape[-2:]
        grid = pixel_grid(h, w, stride, device=self.x.device).expand(len(self.t2), -1, -1)
        return self.G(grid)


def make_pair(
    images: torch.Tensor,
    params: WarpParams | None = None,
    strength: float | None = None,
    generator: torch.Generator | None = None,
) -> WarpPair:
    """Warp a batch of source images into pairs ``(x, x′, G)`` (see the module docstring)."""
    b, _, h, w = images.shape
    p = params or WarpParams()
    s = p.strength if strength is None else strength
    t1 = random_warp(b, p, 0.5 * s, generator).on_lattice()
    t2 = random_warp(b, p, s, generator).on_lattice()
    x2 = apply_backward(images, t1)
    both = compose(t1, t2)
    x = apply_backward(images, both)
    grid = to_normalised(pixel_grid(h, w, device=images.device), h, w).expand(b, -1, -1)
    src = both(grid)
    in_src = (src.abs() <= 1).all(-1)
    g = t2(grid)
    in_x2 = (g.abs() <= 1).all(-1)
    valid = (in_src & in_x2).view(b, h, w)
    return WarpPair(x=x, x2=x2, t2=t2, valid=valid)
