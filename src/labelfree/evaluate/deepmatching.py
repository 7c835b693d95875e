"""Decoding and scoring Trainable DeepMatching output (seed 004 Ch.3 §2.1, §3, METHODS.md §6.6).

``Q0`` is the ``(B, H, W, 2R+1, 2R+1)`` map of :class:`labelfree.nets.deepmatching.MatchPyramid`
(offset index ``(a, c)`` = displacement ``(dx, dy) = (c − R, a − R)`` cells). Decoding follows
eq. (1) on ``Q0``; reciprocal verification is the chapter's footnote 1; densification its
footnote 3 (in cells: a radius of 4 cells is the footnote's 8 px at stride 2); the metrics are
§3's accuracy@T and EPE (seed file /work/shared/seeds/004_77fad0f12a5bea3d.txt).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["decode", "densify", "match_metrics", "reciprocal"]


def _radius(q0: Tensor) -> int:
    if q0.dim() != 5 or q0.shape[-1] != q0.shape[-2] or q0.shape[-1] % 2 == 0:
        raise ValueError(f"expected Q0 of shape (B, H, W, 2R+1, 2R+1), got {tuple(q0.shape)}")
    return (q0.shape[-1] - 1) // 2


@torch.no_grad()
def decode(q0: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (1) on ``Q0``: ``(disp (B, H, W, 2) long cells as (dx, dy), score (B, H, W))``.

    The argmax over the offsets (first one on ties, row-major); −inf entries never win unless a
    point has no finite score at all, in which case its score is −inf.
    """
    r = _radius(q0)
    b, h, w, k, _ = q0.shape
    flat = q0.reshape(b, h, w, k * k)
    idx = flat.argmax(-1)
    score = flat.gather(-1, idx[..., None]).squeeze(-1)
    dy = torch.div(idx, k, rounding_mode="floor") - r
    dx = idx % k - r
    return torch.stack((dx, dy), dim=-1), score


@torch.no_grad()
def reciprocal(q0: Tensor, disp: Tensor) -> Tensor:
    """Footnote 1: ``p`` is verified iff ``Q0(Γ(p)|p) ≥ Q0(Γ(p)|p')`` for every ``p'`` whose radius
    contains the absolute target cell ``Γ(p) = p + disp(p)``.

    Every ``Q0(q|p')`` is scatter-maxed onto an absolute target grid (the map grown by ``R`` on
    each side, since targets may lie outside the map), then compared with each ``p``'s own score.
    A point whose own score is not finite is not verified.
    """
    r = _radius(q0)
    b, h, w, k, _ = q0.shape
    if disp.shape != (b, h, w, 2):
        raise ValueError("disp must be (B, H, W, 2) matching Q0")
    disp = disp.long()
    if bool((disp.abs() > r).any()):
        raise ValueError("displacements outside the radius of Q0")
    dev = q0.device
    wt = w + 2 * r
    ii = torch.arange(h, device=dev).view(h, 1, 1, 1)
    jj = torch.arange(w, device=dev).view(1, w, 1, 1)
    aa = torch.arange(k, device=dev).view(1, 1, k, 1)
    cc = torch.arange(k, device=dev).view(1, 1, 1, k)
    target = ((ii + aa) * wt + (jj + cc)).reshape(1, -1).expand(b, -1)
    best = q0.new_full((b, (h + 2 * r) * wt), float("-inf"))
    best = best.scatter_reduce(1, target, q0.reshape(b, -1), reduce="amax", include_self=False)
    dx, dy = disp[..., 0], disp[..., 1]
    own = q0.reshape(b, h, w, k * k).gather(-1, ((dy + r) * k + dx + r)[..., None]).squeeze(-1)
    tgt = (ii.view(h, 1) + dy + r) * wt + (jj.view(1, w) + dx + r)
    rival = best.gather(1, tgt.reshape(b, -1)).view(b, h, w)
    return torch.isfinite(own) & (own >= rival)


@torch.no_grad()
def densify(
    disp: Tensor, verified: Tensor, radius: int = 4, score: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Footnote 3: give every cell the displacement of the nearest verified cell.

    Within an L∞ window of ``radius`` cells, "nearest" is by Euclidean distance; among equally
    near verified cells the one with the highest ``score`` wins (the footnote's "most
    confident"), or the first in raster order of the offsets when ``score`` is None or tied. A
    verified cell keeps its own displacement (distance 0). Cells with no verified cell in the
    window stay unmatched. Returns ``(dense disp (B, H, W, 2), matched (B, H, W) bool)``;
    unmatched cells hold 0.
    """
    b, h, w, _ = disp.shape
    ver = verified.bool()
    sc = torch.zeros(b, h, w, device=disp.device) if score is None else score.float()
    pad = (radius, radius, radius, radius)
    vp = torch.nn.functional.pad(ver, pad, value=False)
    sp = torch.nn.functional.pad(sc, pad)
    dp = torch.nn.functional.pad(disp.permute(0, 3, 1, 2), pad).permute(0, 2, 3, 1)
    groups: dict[int, list[tuple[int, int]]] = {}
    for oy in range(-radius, radius + 1):
        for ox in range(-radius, radius + 1):
            groups.setdefault(oy * oy + ox * ox, []).append((oy, ox))
    out = torch.zeros_like(disp)
    done = torch.zeros(b, h, w, dtype=torch.bool, device=disp.device)
    for d2 in sorted(groups):
        sl = [
            (slice(radius + oy, radius + oy + h), slice(radius + ox, radius + ox + w))
            for oy, ox in groups[d2]
        ]
        v = torch.stack([vp[:, ys, xs] for ys, xs in sl], dim=-1)
        key = torch.stack([sp[:, ys, xs] for ys, xs in sl], dim=-1).masked_fill(~v, float("-inf"))
        pick = key.argmax(-1)
        cand = torch.stack([dp[:, ys, xs] for ys, xs in sl], dim=-2)  # (B, H, W, n, 2)
        chosen = cand.gather(-2, pick[..., None, None].expand(b, h, w, 1, 2)).squeeze(-2)
        new = v.any(-1) & ~done
        out = torch.where(new[..., None], chosen, out)
        done = done | new
    return out, done


def match_metrics(
    disp_cells: Tensor,
    truth_cells: Tensor,
    valid: Tensor,
    stride: int = 2,
    thresholds: Sequence[float] = (2, 5, 10),
    matched: Tensor | None = None,
) -> dict[str, float]:
    """§3 metrics on a cell grid: ``acc@T`` and ``epe_px`` (errors in PIXELS = cells × stride).

    ``acc@T`` = fraction of valid cells whose error is ≤ T px; unmatched cells (``matched``
    False, or a non-finite displacement) count as wrong. ``epe_px`` = mean error over the valid
    MATCHED cells (an unmatched cell has no error to average; NaN if there is none). The
    chapter measures over pixels; here each cell stands for its 2×2 px.
    """
    d = disp_cells.double()
    t = truth_cells.double()
    ok = valid.bool()
    has = torch.isfinite(d).all(-1)
    if matched is not None:
        has = has & matched.bool()
    err = torch.linalg.vector_norm(torch.nan_to_num(d - t), dim=-1) * stride
    n = int(ok.sum())
    out: dict[str, float] = {}
    for thr in thresholds:
        hit = ok & has & (err <= thr)
        out[f"acc@{thr:g}"] = float(hit.sum()) / n if n else float("nan")
    used = ok & has
    out["epe_px"] = float(err[used].mean()) if bool(used.any()) else float("nan")
    return out
