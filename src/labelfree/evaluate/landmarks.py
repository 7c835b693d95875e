"""Landmark and matching probes for pixel-level representations (seed 004, Ch.4–7).

A label-free network is frozen and probed with annotated landmarks only at evaluation time:

* **Regression probe** (Ch.4 §4, Ch.5 §5.2, Ch.7 §4.1): a *bias-free* linear map from the
  network's ``P`` points (the ``K`` soft-argmax landmarks of ``fse``, or ``M`` virtual points
  of a dense embedding) to the ``L`` annotated landmarks, fitted on annotated training images;
  the error is the mean distance to the true landmarks in percent of the inter-ocular distance
  (IOD), the MAFL/AFLW protocol. :func:`landmark_probe` adds the few-shot curve (1, 5, 10, 20
  annotated images, Ch.7 Table 3) and :func:`mean_shape_error` the trivial baseline.
* **Nearest-label matching** (Ch.6 §4.1, Ch.7 Table 1): the descriptor at a landmark of image
  ``a`` is matched to the nearest descriptor over *all* pixels of image ``b``; the error is the
  pixel distance of the match to ``b``'s own landmark. :func:`flow_matching_error` does the
  same for every foreground pixel of a video frame against the exact optical flow.
* Pictures: :func:`draw_landmarks` and :func:`draw_embedding_colours`.

Conventions: points and landmarks are ``(N, ·, 2)`` arrays of pixel ``(x, y)`` (``x`` the column,
pixel centres at integers); dense descriptors are ``(N, D, H, W)`` (the layout networks emit).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "draw_embedding_colours",
    "draw_landmarks",
    "fit_landmark_regressor",
    "flow_matching_error",
    "iod_error",
    "landmark_probe",
    "matching_error",
    "mean_shape_error",
    "predict_landmarks",
    "sample_descriptors",
]

#: Default relative ridge of :func:`fit_landmark_regressor` (see there).
DEFAULT_RIDGE = 1e-2


#: The probe errors a frame run reports (lower is better), in table order.
FRAME_METRICS = (
    "iod_error_all",
    "iod_error_1",
    "iod_error_5",
    "iod_error_10",
    "iod_error_20",
    "matching_px",
    "flow_matching_px",
    "flow_matching_pct",
)


def _as_points(points: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{what} must be an (N, P, 2) array of (x, y), got shape {arr.shape}")
    return arr.astype(np.float64)


def fit_landmark_regressor(
    points_train: np.ndarray | torch.Tensor,
    landmarks_train: np.ndarray | torch.Tensor,
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Bias-free linear map ``W`` (``(2P, 2L)``) from flattened points to flattened landmarks.

    Seed 004 Ch.4 §4 ("a linear regressor without bias from the 2K landmark coordinates to the
    annotated ones"). Solves ``min_W ‖X W − Y‖² + λ‖W‖²`` with ``X`` the ``(N, 2P)`` points
    ``[x₁, y₁, x₂, y₂, …]`` and ``Y`` the ``(N, 2L)`` landmarks, as one least-squares problem on
    ``[X; √λ I]`` (numerically stable). The thesis leaves the regulariser open (plain least
    squares); here ``λ = ridge · mean(X²)``, i.e. in units of the mean squared coordinate (so
    it does not depend on the image size) and *not* growing with ``N``: with all training
    images the fit is effectively unregularised, while in the few-shot regime (``N`` near or
    below ``2P``) it tames the interpolation peak of plain least squares. With the default
    1e-2, on synthetic faces with 1-px noisy oracle points the few-shot curve (1/5/10/20/all
    images) reads 55/12/10/8/6.6 % IOD against 55/13/35/9/6.6 % with ``ridge ≈ 0``.
    """
    x = _as_points(points_train, "points_train")
    y = _as_points(landmarks_train, "landmarks_train")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need matching, non-empty point sets; got {len(x)} and {len(y)} images")
    xf = x.reshape(len(x), -1)
    yf = y.reshape(len(y), -1)
    d = xf.shape[1]
    lam = float(ridge) * float((xf**2).mean())
    a = np.concatenate([xf, np.sqrt(lam) * np.eye(d)], axis=0)
    b = np.concatenate([yf, np.zeros((d, yf.shape[1]))], axis=0)
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    return w


def predict_landmarks(w: np.ndarray, points: np.ndarray | torch.Tensor) -> np.ndarray:
    """Apply a regressor from :func:`fit_landmark_regressor`: ``(N, P, 2)`` -> ``(N, L, 2)``."""
    x = _as_points(points, "points")
    out = x.reshape(len(x), -1) @ np.asarray(w)
    return out.reshape(len(x), -1, 2)


def iod_error(
    pred: np.ndarray | torch.Tensor, true: np.ndarray | torch.Tensor, iod: Sequence[int]
) -> float:
    """Mean landmark error in percent of the inter-ocular distance.

    ``mean over images and landmarks of ‖pred − true‖ / ‖true[iod[0]] − true[iod[1]]‖ · 100``
    (the MAFL / AFLW protocol of seed 004 Ch.4 Table 1; for 300-W, ``iod`` names the outer eye
    corners).
    """
    p = _as_points(pred, "pred")
    t = _as_points(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} differ")
    i, j = int(iod[0]), int(iod[1])
    dist = np.linalg.norm(t[:, i] - t[:, j], axis=1)
    if np.any(dist <= 0):
        raise ValueError("an image has zero inter-ocular distance")
    err = np.linalg.norm(p - t, axis=2) / dist[:, None]
    return float(100.0 * err.mean())


def mean_shape_error(
    lm_train: np.ndarray | torch.Tensor, lm_test: np.ndarray | torch.Tensor, iod: Sequence[int]
) -> float:
    """The trivial baseline: predict the mean training shape for every test image (% IOD)."""
    tr = _as_points(lm_train, "lm_train")
    te = _as_points(lm_test, "lm_test")
    pred = np.broadcast_to(tr.mean(axis=0, keepdims=True), te.shape)
    return iod_error(pred, te, iod)


def landmark_probe(
    points_train: np.ndarray | torch.Tensor,
    lm_train: np.ndarray | torch.Tensor,
    points_test: np.ndarray | torch.Tensor,
    lm_test: np.ndarray | torch.Tensor,
    iod: Sequence[int],
    shots: Sequence[int | None] = (1, 5, 10, 20, None),
    seed: int = 0,
    draws: int = 10,
    ridge: float = DEFAULT_RIDGE,
) -> dict[str, float]:
    """Regression probe with a few-shot curve.

    For each entry of ``shots``, a regressor is fitted on that many annotated training images
    (``None`` = all of them) and evaluated on the whole test set with :func:`iod_error`.
    Few-shot values are the mean over ``draws`` random draws of the training images (seeded by
    ``seed``; the thesis uses fixed subsets, Ch.7 Table 3 — with synthetic data, averaging draws
    is the less noisy choice); a shot count not below the training-set size uses every image
    once.

    Returns:
        ``{"all": err, "1": err, "5": err, ...}`` in % IOD, and ``"1_std"``, ``"5_std"``, ...
        the standard deviation over the draws.
    """
    xtr = _as_points(points_train, "points_train")
    ytr = _as_points(lm_train, "lm_train")
    xte = _as_points(points_test, "points_test")
    yte = _as_points(lm_test, "lm_test")
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for shot in shots:
        if shot is None or int(shot) >= len(xtr):
            w = fit_landmark_regressor(xtr, ytr, ridge)
            err = iod_error(predict_landmarks(w, xte), yte, iod)
            key = "all" if shot is None else str(int(shot))
            out[key] = err
            if shot is not None:
                out[f"{key}_std"] = 0.0
            continue
        errs = []
        for _ in range(max(1, int(draws))):
            pick = rng.choice(len(xtr), size=int(shot), replace=False)
            w = fit_landmark_regressor(xtr[pick], ytr[pick], ridge)
            errs.append(iod_error(predict_landmarks(w, xte), yte, iod))
        out[str(int(shot))] = float(np.mean(errs))
        out[f"{int(shot)}_std"] = float(np.std(errs))
    return out


def _as_dense(desc: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    t = desc.detach() if isinstance(desc, torch.Tensor) else torch.from_numpy(np.asarray(desc))
    if t.ndim != 4:
        raise ValueError(f"{what} must be (N, D, H, W), got shape {tuple(t.shape)}")
    return t.float().cpu()


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


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return -(-n // ncols), ncols


def draw_landmarks(
    images: np.ndarray,
    points: np.ndarray | torch.Tensor,
    path: str | os.PathLike[str],
    true: np.ndarray | torch.Tensor | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> None:
    """Save a PNG grid of images with their points drawn (one colour per point index).

    Args:
        images: ``(N, H, W, 3)`` uint8.
        points: ``(N, P, 2)`` pixel ``(x, y)`` points (learned landmarks or predictions).
        path: output PNG.
        true: optional ``(N, L, 2)`` ground truth, drawn as small white crosses.
        ncols: images per row.
        title: optional figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _as_points(points, "points")
    imgs = np.asarray(images)
    n = len(imgs)
    rows, cols = _grid(n, ncols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + (0.3 if title else 0)))
    axes = np.atleast_1d(axes).ravel()
    cmap = plt.get_cmap("tab20" if pts.shape[1] > 10 else "tab10")
    colours = [cmap(k % cmap.N) for k in range(pts.shape[1])]
    gt = None if true is None else _as_points(true, "true")
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(imgs[k], interpolation="nearest")
        ax.scatter(pts[k, :, 0], pts[k, :, 1], c=colours, s=10, edgecolors="k", linewidths=0.3)
        if gt is not None:
            ax.scatter(gt[k, :, 0], gt[k, :, 1], c="w", marker="x", s=8, linewidths=0.8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)


def _to_rgb(dense: np.ndarray) -> np.ndarray:
    """``(N, D, H, W)`` -> ``(N, H, W, 3)`` colours in [0, 1]: D = 3 used as is, D > 3 projected
    on its first three principal components, D < 3 zero-padded; each channel is scaled by
    its 1st–99th percentile over all images."""
    n, d, h, w = dense.shape
    flat = dense.transpose(0, 2, 3, 1).reshape(-1, d).astype(np.float64)
    if d > 3:
        centred = flat - flat.mean(0)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
        flat = centred @ vt[:3].T
    elif d < 3:
        flat = np.concatenate([flat, np.zeros((len(flat), 3 - d))], axis=1)
    lo, hi = np.percentile(flat, 1, axis=0), np.percentile(flat, 99, axis=0)
    flat = np.clip((flat - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)
    return flat.reshape(n, h, w, 3)


def draw_embedding_colours(
    images: np.ndarray,
    dense: np.ndarray | torch.Tensor,
    path: str | os.PathLike[str],
    mask: np.ndarray | None = None,
    ncols: int = 8,
    title: str | None = None,
) -> None:
    """Save a PNG: each image above its dense embedding shown as colours (seed 004 Ch.5 Fig. 3,
    7). ``dense`` is ``(N, D, H, W)``; see :func:`_to_rgb` for D ≠ 3. With ``mask``
    (``(N, H, W)`` bool), pixels outside it are drawn black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = np.asarray(images)
    emb = _as_dense(dense, "dense").numpy()
    colours = _to_rgb(emb)
    if colours.shape[1:3] != imgs.shape[1:3]:
        t = torch.from_numpy(colours).permute(0, 3, 1, 2).float()
        t = torch.nn.functional.interpolate(t, size=imgs.shape[1:3], mode="nearest")
        colours = t.permute(0, 2, 3, 1).numpy()
    if mask is not None:
        colours = colours * np.asarray(mask, bool)[..., None]
    n = len(imgs)
    rows, cols = _grid(n, ncols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.6 * cols, 3.2 * rows))
    axes = np.atleast_2d(axes).reshape(2 * rows, cols)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        for ax in (axes[2 * r, c], axes[2 * r + 1, c]):
            ax.axis("off")
        if k < n:
            axes[2 * r, c].imshow(imgs[k], interpolation="nearest")
            axes[2 * r + 1, c].imshow(colours[k], interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(os.fspath(path), dpi=100)
    plt.close(fig)
