"""Decode one image file of any common mode into ``(H, W, 3)`` uint8 RGB.

Real folders mix modes: grey (``L``), grey + alpha (``LA``), ``RGBA``, palette images with or
without a transparent colour (``P``), print files (``CMYK``), bi-level scans (``1``), 16- and
32-bit integer scans (``I;16``, ``I;16B``, ``I``) and floating-point maps (``F``).
:func:`decode_image` turns each of them into the same thing, so that nothing downstream has to
care:

* the EXIF orientation tag is applied first (phone photos are often stored sideways);
* transparent pixels are composited over white (a transparent background reads as paper, not
  as black);
* high-bit-depth images are mapped to 0..255 by :func:`to_uint8` (see there for the rule);
* every failure becomes a :class:`~labelfree.data.imageset.DataError` whose message names the
  file.

:func:`resize_square` is the test-time preprocessing of the papers: resize the shorter side,
then take the central square.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .imageset import DataError

__all__ = ["decode_image", "pil_to_rgb", "resize_square", "to_uint8"]

# Modes with an alpha band: composited over white.
_ALPHA_MODES = {"LA", "La", "RGBA", "RGBa", "PA"}


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a single-band integer or float array to uint8 (0..255).

    The rule, chosen so that ordinary files look as they would in a viewer:

    * uint8 input is returned as it is.
    * Integer input (16- or 32-bit): if every value already lies in 0..255 the values are kept
      (8-bit data stored in a wider container). Otherwise, when no value is negative, values are
      scaled by ``255 / (2**b - 1)`` where ``b`` is the number of bits needed to hold the
      image's largest value: a full-range 16-bit image maps 65535 to 255 and 32768 to 128, a
      12-bit scan stored in 16 bits maps 4095 to 255. Images with negative values are stretched
      linearly from their minimum (0) to their maximum (255).
    * Float input: non-finite values count as 0; values in [0, 1] are multiplied by 255,
      values in [0, 255] are kept, anything else is stretched from min to max.

    Results are rounded to the nearest integer.
    """
    arr = np.asarray(values)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind in "iub":
        data = arr.astype(np.float64)
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 255:
            scaled = data
        elif lo >= 0:
            bits = int(hi).bit_length()
            scaled = data * (255.0 / (2.0**bits - 1.0))
        else:
            scaled = (data - lo) * (255.0 / (hi - lo))
    elif arr.dtype.kind == "f":
        data = np.where(np.isfinite(arr), arr, 0.0).astype(np.float64)
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0 and hi <= 1:
            scaled = data * 255.0
        elif lo >= 0 and hi <= 255:
            scaled = data
        elif hi > lo:
            scaled = (data - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(data)
    else:
        raise TypeError(f"cannot map pixel values of dtype {arr.dtype} to uint8")
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to an ``(H, W, 3)`` uint8 RGB array.

    Transparency is composited over white; high-bit-depth modes go through :func:`to_uint8`.
    EXIF orientation is *not* applied here (see :func:`decode_image`).
    """
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode == "P" or mode in _ALPHA_MODES:
        if mode == "P" and "transparency" not in img.info:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if mode == "L":
        grey = np.asarray(img, dtype=np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "1":
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode.startswith("I") or mode == "F":
        grey = to_uint8(np.asarray(img))
        if grey.ndim != 2:
            raise ValueError(f"unexpected array shape {grey.shape} for mode {mode}")
        return np.repeat(grey[:, :, None], 3, axis=2)
    # CMYK, YCbCr, LAB, HSV and any other mode Pillow can convert.
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def decode_image(path: str | os.PathLike[str], min_size: int | None = None) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        path: the image file (any format Pillow reads; the first frame of animations).
        min_size: optional hint that the caller will shrink the image so that its shorter side
            is ``min_size``; JPEG files are then decoded directly at the smallest DCT scale that
            keeps both sides at least ``min_size`` (much faster for large photos).

    Raises:
        DataError: the file is missing, unreadable, truncated or not an image. The message
            contains ``path``.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if min_size is not None and img.format == "JPEG":
                img.draft(None, (int(min_size), int(min_size)))
            img.load()
            oriented = ImageOps.exif_transpose(img)
            return pil_to_rgb(oriented if oriented is not None else img)
    except DataError:
        raise
    except Exception as exc:  # Pillow raises many types for bad files.
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, FileNotFoundError):
            reason = "file not found"
        raise DataError(f"cannot read image {path}: {reason}") from exc


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and crop the central ``size × size`` square.

    Done in one resampling step: the central square of the original (side = shorter side) is
    resampled to ``size × size`` with Pillow's bilinear filter, which is antialiased when
    shrinking. This equals "resize shorter side, then centre crop" without a second rounding.

    Args:
        img: ``(H, W, 3)`` uint8 array.
        size: output side in pixels (> 0).

    Returns:
        ``(size, size, 3)`` uint8 array (``img`` itself when it already has that shape).
    """
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}")
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    side = min(h, w)
    left = (w - side) / 2.0
    top = (h - side) / 2.0
    out = Image.fromarray(arr).resize(
        (size, size),
        resample=Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
    )
    return np.asarray(out, dtype=np.uint8)
