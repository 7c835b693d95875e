"""Structured-output hinge loss of Trainable DeepMatching (seed 004 Ch.3 §2.2, METHODS.md §6.6).

``L(Q, Γ0) = Σ_p Σ_q max{0, 1 − g_σ(q − Γ0(p)) + Q(q|p) − Q(Γ0(p)|p)}`` with
``g_σ(z) = exp(−‖z‖² / 2σ²)`` (seed file /work/shared/seeds/004_77fad0f12a5bea3d.txt, §2.2).
Choices the text leaves open:

* Units: offsets and σ are in level-0 CELLS (the grid of :mod:`labelfree.nets.deepmatching`).
  ``σ = 0`` means ``g`` is the indicator of the truth cell, i.e. the released code's constant
  margin 1 (zero margin at the truth itself); for ``σ > 0`` ``g`` uses the continuous Γ0.
* The truth cell is ``floor(Γ0(p) − p + ½)`` per axis (round half up, not to even, so the
  choice does not depend on the parity of the cell).
* A ``p`` is skipped (and not counted) when it is marked invalid, when its truth cell lies
  outside the search radius (as the released code does: no score exists there), or when
  ``Q(Γ0(p)|p)`` is not finite (no top-down path reaches it, so the hinge has no reference).
* Terms whose ``Q(q|p)`` is −inf contribute 0 (the hinge of −inf).
* The code sums the per-``p`` terms without normalising; we return the MEAN over the kept ``p``
  of the per-``p`` sums so the learning rate does not depend on the image size.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["structured_hinge"]


def structured_hinge(
    q0: Tensor, truth: Tensor, valid: Tensor, radius: int, sigma: float = 0.0
) -> tuple[Tensor, int]:
    """Seed 004 Ch.3 §2.2 loss on ``Q0`` of shape ``(B, H, W, 2R+1, 2R+1)``.

    ``truth``: ``(B, H, W, 2)`` exact displacement ``Γ0(p) − p`` in cells as ``(dx, dy)``;
    ``valid``: ``(B, H, W)`` bool. Returns (mean over kept ``p`` of the per-``p`` sums, number of
    kept ``p``); with nothing kept, a zero that still depends on ``q0`` (so backward works).
    """
    if q0.dim() != 5 or q0.shape[-1] != q0.shape[-2]:
        raise ValueError(f"expected Q0 of shape (B, H, W, K, K), got {tuple(q0.shape)}")
    k = q0.shape[-1]
    if k != 2 * radius + 1:
        raise ValueError(f"radius {radius} does not match an offset grid of side {k}")
    if truth.shape != (*q0.shape[:3], 2) or valid.shape != q0.shape[:3]:
        raise ValueError("truth must be (B, H, W, 2) and valid (B, H, W), matching Q0")
    flat = q0.reshape(-1, k * k)
    tr = truth.reshape(-1, 2).to(q0.dtype)
    cell = torch.floor(tr + 0.5).long()
    keep = valid.reshape(-1).bool() & (cell.abs() <= radius).all(-1)
    col = (cell[:, 0] + radius).clamp(0, k - 1)
    row = (cell[:, 1] + radius).clamp(0, k - 1)
    idx = row * k + col
    at_truth = flat.gather(1, idx[:, None]).squeeze(1)
    keep = keep & torch.isfinite(at_truth.detach())
    n = int(keep.sum())
    if n == 0:
        return flat[:0].sum(), 0
    qk, ref, tk, ik = flat[keep], at_truth[keep], tr[keep], idx[keep]
    if sigma > 0:
        off = torch.arange(k, dtype=q0.dtype, device=q0.device) - radius
        dy, dx = torch.meshgrid(off, off, indexing="ij")
        z2 = (dx.reshape(1, -1) - tk[:, :1]) ** 2 + (dy.reshape(1, -1) - tk[:, 1:]) ** 2
        g = torch.exp(-z2 / (2.0 * sigma**2))
    else:
        g = torch.zeros_like(qk)
        g.scatter_(1, ik[:, None], 1.0)
    finite = torch.isfinite(qk)
    safe_q = torch.where(finite, qk, ref[:, None].detach())  # no inf arithmetic anywhere
    terms = torch.relu(1.0 - g + safe_q - ref[:, None])
    terms = torch.where(finite, terms, torch.zeros_like(terms))
    return terms.sum(1).mean(), n
