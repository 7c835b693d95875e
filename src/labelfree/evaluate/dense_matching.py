"""Nearest-label and optical-flow matching probes for dense descriptors (seed 004 Ch.5–7).

The descriptor at a point of one image is matched to the nearest descriptor over *all* pixels
of the other image; the error is the pixel distance of the match to the true correspondence
(an annotated landmark, or the exact optical flow). See :mod:`labelfree.evaluate.landmarks`.
"""

from __future__ import annotations

import numpy as np
import torch

from labelfree.evaluate.probe_arrays import _as_dense, _as_points

__all__ = ["flow_matching_error", "matching_error", "sample_descriptors"]


def sample_descriptors(
    desc: np.ndarray | torch.Tensor, points: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """Bilinearly sample ``(N, D, H, W)`` descriptors at ``(N, P, 2)`` pixel points -> ``(N, P,
    D)``. Points outside the image take the border value."""
    d = _as_dense(desc, "desc")
    p = torch.as_tensor(_as_points(points, "points"), dtype=torch.float32)
    _, _, h, w = d.shape
    grid = torch.stack(
        [2.0 * p[..., 0] / max(w - 1, 1) - 1.0, 2.0 * p[..., 1] / max(h - 1, 1) - 1.0], dim=-1
    )
    s = torch.nn.functional.grid_sample(
        d, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=True
    )
    return s[..., 0].permute(0, 2, 1)


def _nearest_pixels(queries: torch.Tensor, target: torch.Tensor, metric: str) -> torch.Tensor:
    """For ``(Q, D)`` queries and a ``(D, H, W)`` map, the ``(Q, 2)`` pixel ``(x, y)`` of the
    nearest descriptor."""
    d, h, w = target.shape
    flat = target.reshape(d, h * w)
    if metric == "l2":
        score = 2.0 * queries @ flat - (flat**2).sum(0, keepdim=True)
    elif metric == "dot":
        score = queries @ flat
    else:
        raise ValueError(f"metric must be 'l2' or 'dot', got {metric!r}")
    idx = score.argmax(dim=1)
    return torch.stack([(idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()], 1)


def matching_error(
    desc_a: np.ndarray | torch.Tensor,
    lm_a: np.ndarray | torch.Tensor,
    desc_b: np.ndarray | torch.Tensor,
    lm_b: np.ndarray | torch.Tensor,
    metric: str = "l2",
) -> float:
    """Nearest-label matching error in pixels (seed 004 Ch.6 §4.1, Ch.7 §4.1 Table 1).

    For each pair ``i`` (image ``a[i]`` with image ``b[i]``) and each landmark ``l``: the
    descriptor of ``a[i]`` at ``lm_a[i, l]`` (bilinear sample) is compared with the descriptor
    of every pixel of ``b[i]``; the best match's pixel centre is compared with ``lm_b[i, l]``.
    Returns the mean distance over pairs and landmarks.

    Args:
        desc_a, desc_b: ``(N, D, H, W)`` descriptors of the two images of each pair.
        lm_a, lm_b: ``(N, L, 2)`` pixel ``(x, y)`` landmarks of each image (rows of ``lm_b`` in
            the same landmark order as ``lm_a``; for left↔right transfer pass ``lm_b``
            permuted and the query descriptors reflected).
        metric: ``"l2"`` (nearest neighbour, the thesis's matching) or ``"dot"`` (largest inner
            product, the mode of the dense loss's matching probability).
    """
    da, db = _as_dense(desc_a, "desc_a"), _as_dense(desc_b, "desc_b")
    pa = _as_points(lm_a, "lm_a")
    pb = _as_points(lm_b, "lm_b")
    if len(da) != len(db) or len(pa) != len(da) or pa.shape != pb.shape:
        raise ValueError("desc_a, desc_b, lm_a and lm_b must describe the same pairs")
    queries = sample_descriptors(da, pa)
    errs = []
    with torch.no_grad():
        for i in range(len(da)):
            match = _nearest_pixels(queries[i], db[i], metric).numpy()
            errs.append(np.linalg.norm(match - pb[i], axis=1))
    return float(np.mean(np.concatenate(errs)))


def flow_matching_error(
    desc_t: np.ndarray | torch.Tensor,
    desc_t1: np.ndarray | torch.Tensor,
    flow: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    metric: str = "l2",
    max_points: int | None = 512,
    percent: bool = False,
    seed: int = 0,
) -> float:
    """Dense matching error against exact optical flow (the arm experiment, seed 004 Ch.5 §4.1,
    Ch.7 §4.3).

    For each frame pair ``i`` and each pixel ``u`` of frame t with a valid flow (finite, and in
    ``mask`` when given), the descriptor ``desc_t[i, :, u]`` is matched to the nearest descriptor
    over all pixels of frame t+1; the error is the distance of the match to ``u + flow[i, u]``.

    Args:
        desc_t, desc_t1: ``(N, D, H, W)`` descriptors of frames t and t+1.
        flow: ``(N, H, W, 2)`` forward flow ``(dx, dy)`` in pixels, NaN where undefined (the
            layout of ``synthetic-arm``'s ``meta["flow"]``).
        mask: optional ``(N, H, W)`` bool: only these pixels are queried (e.g. foreground).
        metric: ``"l2"`` or ``"dot"`` (see :func:`matching_error`).
        max_points: query at most this many random valid pixels per frame (``None`` = all);
            the default keeps the probe cheap with a negligible sampling error.
        percent: return the error in percent of the image width (the thesis's unit) instead
            of pixels.
        seed: seed of the pixel subsample.

    Returns:
        Mean error over all queried pixels (pixels, or % of width with ``percent=True``).
    """
    d0, d1 = _as_dense(desc_t, "desc_t"), _as_dense(desc_t1, "desc_t1")
    f = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    n, _, h, w = d0.shape
    if d1.shape != d0.shape or f.shape != (n, h, w, 2):
        raise ValueError(
            f"desc_t {tuple(d0.shape)}, desc_t1 {tuple(d1.shape)} and flow {f.shape} disagree"
        )
    valid = np.isfinite(f).all(axis=-1)
    if mask is not None:
        m = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        valid &= m.astype(bool)
    rng = np.random.default_rng(seed)
    errs = []
    with torch.no_grad():
        for i in range(n):
            ys, xs = np.nonzero(valid[i])
            if len(xs) == 0:
                continue
            if max_points is not None and len(xs) > max_points:
                keep = rng.choice(len(xs), size=int(max_points), replace=False)
                ys, xs = ys[keep], xs[keep]
            queries = d0[i][:, torch.from_numpy(ys), torch.from_numpy(xs)].T
            match = _nearest_pixels(queries, d1[i], metric).numpy()
            target = np.stack([xs, ys], axis=1) + f[i, ys, xs]
            errs.append(np.linalg.norm(match - target, axis=1))
    if not errs:
        raise ValueError("no pixel has a valid flow (and mask)")
    err = float(np.mean(np.concatenate(errs)))
    return 100.0 * err / w if percent else err
