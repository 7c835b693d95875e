"""Pictures of the landmark probes: learned points on images, dense embeddings as colours."""

from __future__ import annotations

import os

import numpy as np
import torch

from labelfree.evaluate.probe_arrays import _as_dense, _as_points

__all__ = ["draw_embedding_colours", "draw_landmarks"]


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
