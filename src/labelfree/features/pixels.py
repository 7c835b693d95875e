"""Raw pixels as the initial representation g(x): the simplest baseline.

Also home of :func:`to_gray`, the luma conversion shared with the HOG extractors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.transform import resize

from labelfree.data.imageset import DataError, ImageSet
from labelfree.features.base import FeatureExtractor, register

#: ITU-R BT.601 luma weights (R, G, B): Y' = 0.299 R + 0.587 G + 0.114 B.
LUMA_601 = np.array([0.299, 0.587, 0.114])


def to_gray(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB → ``(N, H, W)`` float64 luma in [0, 1] (ITU-R BT.601 weights).

    The weights are applied to the stored (gamma-encoded) values, as BT.601 luma is defined;
    an image whose three channels are equal maps to that channel divided by 255. Works through
    ``chunk`` images at a time, so the only full-size array is the ``(N, H, W)`` result.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"expected (N, H, W, 3) images, got shape {images.shape}")
    out = np.empty(images.shape[:3], dtype=np.float64)
    for start in range(0, len(images), chunk):
        out[start : start + chunk] = images[start : start + chunk] @ LUMA_601
    out /= 255.0
    return out


def _as_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """Normalise a ``size`` option (``None``, ``s`` or ``(h, w)``) to ``None`` or ``(h, w)``."""
    if size is None:
        return None
    if isinstance(size, int | np.integer):
        hw = (int(size), int(size))
    else:
        vals = [int(v) for v in size]
        if len(vals) != 2:
            raise DataError(f"size must be an int or (height, width), got {size!r}")
        hw = (vals[0], vals[1])
    if min(hw) < 1:
        raise DataError(f"size must be positive, got {size!r}")
    return hw


@register
class PixelsExtractor(FeatureExtractor):
    """Flattened pixel intensities in [0, 1] (float32).

    The calibration baseline of METHODS.md §0 ("pixels 0.366" MAP@R on mnist5k 0–4 → 5–9;
    this extractor reproduces 0.366 with its defaults on 28×28 digits).

    Args:
        size: resize every image to ``size`` (an int for a square, or ``(height, width)``)
            before flattening; ``None`` keeps the collection's size. Resizing is bilinear with
            Gaussian anti-aliasing when shrinking (``skimage.transform.resize``), applied to
            the grey (or per-channel) float image.
        grayscale: convert to one ITU-R BT.601 luma channel first (``H·W`` features); otherwise
            keep the three channels (``H·W·3`` features, channel-last order). Default ``True``:
            a fixed, deterministic choice rather than one guessed per collection, since most
            similarity baselines (and HOG) work on intensity alone.
    """

    name = "pixels"

    def __init__(self, size: int | Sequence[int] | None = None, grayscale: bool = True) -> None:
        self.size = _as_size(size)
        self.grayscale = bool(grayscale)

    def config(self) -> dict[str, Any]:
        return {
            "size": None if self.size is None else list(self.size),
            "grayscale": self.grayscale,
        }

    def _transform(self, images: ImageSet) -> np.ndarray:
        arr = to_gray(images.images) if self.grayscale else images.images / 255.0
        if self.size is not None and tuple(arr.shape[1:3]) != self.size:
            out_shape = self.size + tuple(arr.shape[3:])
            out = np.zeros((len(arr), *out_shape))
            for i, im in enumerate(arr):
                out[i] = resize(im, out_shape, order=1, anti_aliasing=True, preserve_range=True)
            arr = np.clip(out, 0.0, 1.0)
        return arr.reshape(len(arr), -1).astype(np.float32)
