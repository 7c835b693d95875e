"""Losses of the object-frame methods (seed 004 Ch.4–7; METHODS.md §6.1–6.4).

Convention (METHODS.md §6): for a pair ``(x, x′)`` the correspondence ``G`` gives, for each
cell ``u`` of x's map, its location ``G[u]`` in x′, expressed in the *map-cell* units of x′'s
map (cell (i, j) of a map has coordinates (j, i)). Maps are ``(B, C, h, w)``; ``G`` is
``(B, h·w, 2)`` in row-major cell order and ``mask`` ``(B, h·w)`` marks cells with a match.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def cell_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h·w, 2) coordinates (x, y) = (column, row) of the cells of an h×w map."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)


# ---- Ch.4: factorized spatial embeddings -------------------------------------------------------
def spatial_softmax(maps: torch.Tensor) -> torch.Tensor:
    """p(u | x, r): softmax of each of the K maps over its pixels; (B, K, h, w)."""
    b, k, h, w = maps.shape
    return maps.reshape(b, k, h * w).softmax(-1).reshape(b, k, h, w)


def soft_argmax(prob: torch.Tensor) -> torch.Tensor:
    """u*_r = Σ_u u p(u | x, r): (B, K, 2) in map-cell coordinates."""
    b, k, h, w = prob.shape
    grid = cell_grid(h, w, prob.device, prob.dtype)
    return prob.reshape(b, k, h * w) @ grid


def alignment_loss(
    p: torch.Tensor, p2: torch.Tensor, G: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """L_align = (1/K) Σ_r Σ_{u,v} ‖G[u] − v‖² p(u|x,r) p(v|x′,r), mean over the batch.

    Seed 004 Ch.4 eq. (6), computed in linear time by expanding the square:
    Σ_u ‖G[u]‖² p(u) + Σ_v ‖v‖² p′(v) − 2 (Σ_u G[u] p(u))ᵀ(Σ_v v p′(v)). Coordinates are divided
    by ``scale`` first (the methods pass half the map size, so distances are in the normalised
    [−1, 1] units of the image and γ = 500 keeps the published balance with the diversity term).
    """
    b, k, h, w = p.shape
    pu = p.reshape(b, k, h * w)
    pv = p2.reshape(b, k, h * w)
    g = G / scale
    v = cell_grid(h, w, p.device, p.dtype) / scale
    term_u = (pu * (g * g).sum(-1)[:, None]).sum(-1)
    term_v = (pv * (v * v).sum(-1)[None, None]).sum(-1)
    cross = ((pu @ g) * (pv @ v)).sum(-1)
    return (term_u + term_v - 2 * cross).mean()


def alignment_loss_quadratic(
    p: torch.Tensor, p2: torch.Tensor, G: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """The quadratic-time definition of :func:`alignment_loss` (reference for tests)."""
    b, k, h, w = p.shape
    v = cell_grid(h, w, p.device, p.dtype) / scale
    d2 = torch.cdist(G / scale, v[None].expand(b, -1, -1)) ** 2  # (B, u, v)
    pu = p.reshape(b, k, h * w)
    pv = p2.reshape(b, k, h * w)
    return torch.einsum("bku,buv,bkv->bk", pu, d2, pv).mean()


def diversity_loss(p: torch.Tensor, m: int = 4) -> torch.Tensor:
    """L''_div = K − Σ_u max_r (m×m sum-pooled p)(u), mean over the batch (Ch.4 eq. 8'').

    0 when the K maps fall in different pooling cells, K − 1 when all maps are identical deltas.
    ``m`` is left open by the thesis; 4 cells of the half-resolution map (8 input pixels at the
    64-px scale) keeps K = 30 landmarks placeable on a 32×32 map.
    """
    k = p.shape[1]
    # A true m×m sum (divisor 1): partial windows at the border must not be scaled up.
    pooled = F.avg_pool2d(p, m, stride=m, ceil_mode=True, divisor_override=1)
    return (k - pooled.amax(1).flatten(1).sum(-1)).mean()


# ---- Ch.5: dense equivariant labelling ---------------------------------------------------------
def _bilinear_weights(G: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (…, 4) into an h×w map and bilinear weights (…, 4) of the points G (…, 2)."""
    gx = G[..., 0].clamp(0, w - 1)
    gy = G[..., 1].clamp(0, h - 1)
    x0 = gx.floor().clamp(max=w - 2) if w > 1 else gx.floor()
    y0 = gy.floor().clamp(max=h - 2) if h > 1 else gy.floor()
    fx, fy = gx - x0, gy - y0
    x1 = (x0 + 1).clamp(max=w - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    idx = torch.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1], -1).long()
    wts = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], -1)
    return idx, wts


def _dense_chunk(
    phi_u: torch.Tensor,
    phi2: torch.Tensor,
    G: torch.Tensor,
    grid: torch.Tensor,
    loss: str,
    gamma: float,
    h: int,
    w: int,
) -> torch.Tensor:
    """Per-cell dense loss for a chunk of cells: phi_u (B, c, D), phi2 (B, D, h·w), G (B, c, 2)."""
    logits = phi_u @ phi2  # (B, c, h·w)
    if loss == "log":
        logp = logits.log_softmax(-1)
        idx, wts = _bilinear_weights(G, h, w)
        # log of the bilinearly interpolated probability at the sub-cell location G[u]
        picked = torch.gather(logp, 2, idx) + torch.log(wts.clamp_min(1e-12))
        return -torch.logsumexp(picked, -1)
    prob = logits.softmax(-1)
    # G and the grid carry no gradient: only p(v|u) is learned through this term.
    dist = torch.cdist(G, grid[None].expand(G.shape[0], -1, -1)) ** gamma
    return (prob * dist).sum(-1)


def dense_loss(
    phi: torch.Tensor,
    phi2: torch.Tensor,
    G: torch.Tensor,
    mask: torch.Tensor | None = None,
    loss: str = "dist",
    gamma: float = 0.5,
    chunk: int = 1024,
    reduce: bool = True,
) -> torch.Tensor:
    """Dense equivariant labelling loss (seed 004 Ch.5 eqs. 4–5), chunked over the cells of x.

    p(v | u) = softmax_v ⟨Φ_u(x), Φ_v(x′)⟩ over every cell v of x′;
    ``loss="log"``: L_log = −mean_u log p(G[u] | u) (p bilinearly interpolated at G[u]);
    ``loss="dist"``: L_dist = mean_u Σ_v ‖v − G[u]‖^γ p(v | u) (γ ∈ {0.5, 1}; distances in cells).
    Cells with ``mask`` False (no correspondence) are left out of the mean. The (h·w)² matching
    matrix is never held whole: it is built ``chunk`` rows at a time and recomputed in the backward
    pass (activation checkpointing), so a 64×64 map costs chunk·4096 floats per image.

    Returns the mean over valid cells and images, or with ``reduce=False`` the per-image mean (B,).
    """
    if loss not in ("log", "dist"):
        raise ValueError(f"unknown dense loss {loss!r}; choose 'log' or 'dist'")
    b, d, h, w = phi.shape
    n = h * w
    phi_u_all = phi.reshape(b, d, n).transpose(1, 2)
    phi2f = phi2.reshape(b, d, -1)
    grid = cell_grid(phi2.shape[-2], phi2.shape[-1], phi.device, phi.dtype)
    h2, w2 = phi2.shape[-2:]
    parts = []
    for s in range(0, n, chunk):
        args = (phi_u_all[:, s : s + chunk], phi2f, G[:, s : s + chunk], grid)
        if torch.is_grad_enabled() and (phi.requires_grad or phi2.requires_grad):
            parts.append(checkpoint(_dense_chunk, *args, loss, gamma, h2, w2, use_reentrant=False))
        else:
            parts.append(_dense_chunk(*args, loss, gamma, h2, w2))
    per = torch.cat(parts, 1)  # (B, n)
    m = torch.ones_like(per) if mask is None else mask.reshape(b, n).to(per.dtype)
    if reduce:
        return (per * m).sum() / m.sum().clamp_min(1.0)
    return (per * m).sum(1) / m.sum(1).clamp_min(1.0)


# ---- Ch.6: symmetric object frames -------------------------------------------------------------
def reflect_labels(phi: torch.Tensor) -> torch.Tensor:
    """Reflect the first embedding coordinate: the mirror's action on the object frame (Ch.6)."""
    return torch.cat([-phi[:, :1], phi[:, 1:]], 1)


def mirror_correspondence(G: torch.Tensor, w: int) -> torch.Tensor:
    """G composed with the horizontal mirror of x′ (map of width ``w``): x ↦ w − 1 − x."""
    return torch.stack([(w - 1) - G[..., 0], G[..., 1]], -1)


def rotate_labels(phi: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate the first two embedding coordinates by ``angle`` (n-fold symmetry group, Ch.6)."""
    c, s = math.cos(angle), math.sin(angle)
    a, b = phi[:, :1], phi[:, 1:2]
    return torch.cat([c * a - s * b, s * a + c * b, phi[:, 2:]], 1)


def group_min_dense_loss(
    phi: torch.Tensor, phi2: torch.Tensor, G: torch.Tensor, n: int, **kw
) -> torch.Tensor:
    """n-fold rotational symmetry (Ch.6): per image, the minimum of the dense loss over the n
    rotations of the embedding's first two coordinates; mean over the batch."""
    losses = torch.stack(
        [
            dense_loss(rotate_labels(phi, 2 * math.pi * k / n), phi2, G, reduce=False, **kw)
            for k in range(n)
        ],
        0,
    )
    return losses.amin(0).mean()


# ---- Ch.7: embedding volume compression ----------------------------------------------------------
def _recon_chunk(phi_u: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """phi_u (B, c, D), aux (B, D, M) → Σ_v softmax_v⟨Φ_u, Φ_v(aux)⟩ Φ_v(aux): (B, c, D)."""
    att = (phi_u @ aux).softmax(-1)
    return att @ aux.transpose(1, 2)


def evc_reconstruct(phi: torch.Tensor, aux: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Φ̂_u(x) = Σ_v softmax_v⟨Φ_u(x), Φ_v(x_α)⟩ Φ_v(x_α) (seed 004 Ch.7 eq. 3), chunked.

    ``aux``: the auxiliary embedding, (B, D, h, w) for one auxiliary image per item, or
    (B, S, D, h, w) for a set of S auxiliary images (their pixels pooled into one softmax —
    the grouped attention of Ch.7 §3.3). Returns Φ̂ with the shape of ``phi``.
    """
    b, d, h, w = phi.shape
    auxf = aux.transpose(1, 2).reshape(b, d, -1) if aux.dim() == 5 else aux.reshape(b, d, -1)
    phi_u = phi.reshape(b, d, h * w).transpose(1, 2)
    parts = []
    for s in range(0, h * w, chunk):
        if torch.is_grad_enabled() and (phi.requires_grad or aux.requires_grad):
            parts.append(
                checkpoint(_recon_chunk, phi_u[:, s : s + chunk], auxf, use_reentrant=False)
            )
        else:
            parts.append(_recon_chunk(phi_u[:, s : s + chunk], auxf))
    return torch.cat(parts, 1).transpose(1, 2).reshape(b, d, h, w)
