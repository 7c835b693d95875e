"""A many-class set of real handwriting: two-digit numbers composed from MNIST-5k digits.

The bundled digit sets have 5 seen and 5 unseen classes; the papers' benchmarks have 100-11,000
classes. ``mnist-numbers`` gives the unseen-class protocol many classes with real variation
(different writers, strokes and slants) and nothing to download: each image is a number
``"00"``..``"99"`` written as two MNIST-5k digits side by side on a 40×40 canvas, each digit
scaled to 20×20 and shifted up or down on its own by up to :data:`JITTER` pixels.

Splits (fixed, independent of any run seed):

* the 100 numbers are permuted once (seed :data:`SPLIT_SEED`); the first 50 are the ``train``
  classes, the other 50 the ``test`` classes — disjoint classes, as the protocol requires;
* the digit images are split too: train numbers are composed only from the first 250 MNIST-5k
  images of each digit, test numbers only from the last 250, so no written digit appears in both;
* :data:`PER_CLASS` = 50 images per number: 2,500 train and 2,500 test images.

``meta["sources"]`` (N, 2) holds the MNIST-5k indices of each image's two digits (exact ground
truth, used by the tests). Labels are ids into ``class_names`` (the number strings).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .bundled import _mnist5k_arrays
from .decode import resize_square
from .imageset import DataError, ImageSet, check_pixel_memory

__all__ = ["mnist_numbers", "number_classes"]

CANVAS = 40
DIGIT = 20
JITTER = 2
PER_CLASS = 50
SPLIT_SEED = 2026
#: Images of each digit in MNIST-5k kept for each split's compositions.
HALF = 250


@functools.lru_cache(maxsize=1)
def number_classes() -> dict[str, tuple[int, ...]]:
    """The numbers (0..99) of each split: 50 train, 50 test, disjoint; ``all`` is both."""
    order = np.random.default_rng(SPLIT_SEED).permutation(100)
    train = tuple(sorted(int(v) for v in order[:50]))
    test = tuple(sorted(int(v) for v in order[50:]))
    return {"train": train, "test": test, "all": tuple(range(100))}


@functools.lru_cache(maxsize=1)
def _small_digits() -> np.ndarray:
    """Every MNIST-5k digit resized to ``DIGIT``×``DIGIT`` (bilinear), uint8."""
    grey, _ = _mnist5k_arrays()
    out = np.stack(
        [
            np.asarray(Image.fromarray(im).resize((DIGIT, DIGIT), Image.Resampling.BILINEAR))
            for im in grey
        ]
    )
    out.flags.writeable = False
    return out


def _compose(
    numbers: list[int], split: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``PER_CLASS`` canvases per number and the (N, 2) MNIST-5k indices they are drawn from."""
    _, digit = _mnist5k_arrays()
    pools = {}
    for d in range(10):
        members = np.flatnonzero(digit == d)
        pools[d] = members[:HALF] if split == "train" else members[HALF : 2 * HALF]
    small = _small_digits()
    n = len(numbers) * PER_CLASS
    canvas = np.zeros((n, CANVAS, CANVAS), np.uint8)
    sources = np.zeros((n, 2), np.int64)
    mid = (CANVAS - DIGIT) // 2
    for i, number in enumerate(np.repeat(numbers, PER_CLASS)):
        for side, d in enumerate(divmod(int(number), 10)):
            src = int(rng.choice(pools[d]))
            top = mid + int(rng.integers(-JITTER, JITTER + 1))
            canvas[i, top : top + DIGIT, side * DIGIT : (side + 1) * DIGIT] = small[src]
            sources[i, side] = src
    return canvas, sources


def mnist_numbers(split: str = "all", image_size: int | None = None) -> ImageSet:
    """Two-digit numbers from MNIST-5k: 50 train and 50 unseen test classes (module docstring).

    Args:
        split: ``"train"`` (2,500 images of 50 numbers), ``"test"`` (2,500 of the other 50) or
            ``"all"`` (both).
        image_size: output side; ``None`` keeps the 40×40 canvas.
    """
    classes = number_classes()
    if split not in classes:
        raise DataError(
            f"mnist-numbers: unknown split {split!r}; choose one of {', '.join(classes)}"
        )
    parts = ("train", "test") if split == "all" else (split,)
    grey, sources, numbers = [], [], []
    for part in parts:
        # one generator per split, so train and test are the same images in "all"
        rng = np.random.default_rng([SPLIT_SEED, 0 if part == "train" else 1])
        c, s = _compose(list(classes[part]), part, rng)
        grey.append(c)
        sources.append(s)
        numbers.append(np.repeat(classes[part], PER_CLASS))
    grey_all, number = np.concatenate(grey), np.concatenate(numbers)
    rgb = np.repeat(grey_all[..., None], 3, axis=3)
    if image_size is not None and image_size != CANVAS:
        check_pixel_memory(len(rgb), image_size, "mnist-numbers images")
        rgb = np.stack([resize_square(im, image_size) for im in rgb])
    wanted = sorted(set(int(v) for v in number))
    ids = {v: i for i, v in enumerate(wanted)}
    return ImageSet(
        images=np.ascontiguousarray(rgb),
        labels=np.array([ids[int(v)] for v in number], dtype=np.int64),
        class_names=[f"{v:02d}" for v in wanted],
        paths=None,
        name=f"mnist-numbers:{split}",
        meta={
            "source": "mnist-numbers",
            "split": split,
            "hflip": False,
            "sources": np.concatenate(sources),
            "per_item": ("sources",),
        },
    )
