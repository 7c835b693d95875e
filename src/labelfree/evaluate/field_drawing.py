"""Pictures of per-pixel fields for reports: optical flow / match fields as colour (hue = the
direction, brightness = the length, the usual flow colour wheel), label maps, and embeddings
projected to RGB, laid out as rows of small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_rows", "flow_to_rgb", "labels_to_rgb", "project_rgb"]


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(..., H, W, 2) displacements (dx, dy) → (..., H, W, 3) uint8; NaN → black. The length
    is scaled by ``max_norm`` (default: the largest finite length)."""
    import matplotlib.colors as mcolors

    f = np.asarray(flow, dtype=np.float64)
    finite = np.isfinite(f).all(-1)
    f = np.where(finite[..., None], f, 0.0)
    mag = np.hypot(f[..., 0], f[..., 1])
    top = max_norm if max_norm is not None else (float(mag[finite].max()) if finite.any() else 1.0)
    hue = (np.arctan2(f[..., 1], f[..., 0]) / (2 * np.pi)) % 1.0
    sat = np.clip(mag / max(top, 1e-9), 0.0, 1.0)
    rgb = mcolors.hsv_to_rgb(np.stack([hue, sat, np.ones_like(hue)], -1))
    rgb[~finite] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def labels_to_rgb(labels: np.ndarray) -> np.ndarray:
    """(..., H, W) integer labels → (..., H, W, 3) uint8 (label 0 black, then tab10)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    lab = np.asarray(labels).astype(np.int64)
    rgb = np.asarray(cmap((lab - 1) % 10))[..., :3]
    rgb[lab <= 0] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def project_rgb(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D, H, W) embeddings → (N, H, W, 3) uint8 through one fixed random projection,
    each channel stretched to the 1–99th percentiles over the set."""
    m = np.asarray(maps, dtype=np.float64)
    proj = np.random.default_rng(seed).normal(size=(m.shape[1], 3))
    out = np.einsum("ndhw,dc->nhwc", m, proj)
    lo, hi = np.percentile(out, 1, axis=(0, 1, 2)), np.percentile(out, 99, axis=(0, 1, 2))
    return (np.clip((out - lo) / np.maximum(hi - lo, 1e-9), 0, 1) * 255).round().astype(np.uint8)


def draw_rows(rows: list[list[np.ndarray]], titles: list[str], path: Path, suptitle: str) -> None:
    """A grid: one row per entry of ``rows`` (each a list of (H, W, 3) uint8 images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.7 * n_rows), squeeze=False)
    for i, (row, title) in enumerate(zip(rows, titles, strict=True)):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if j == 0:
                ax.set_title(title, fontsize=7, loc="left")
    fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
