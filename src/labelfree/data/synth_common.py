"""What the generated image sets share: split names, per-split random streams, a cache.

Used by :mod:`labelfree.data.synth_faces` and :mod:`labelfree.data.synth_arm`. The ``train``
and ``test`` splits draw from disjoint random streams of the same seed, so their identities /
videos never overlap; generated sets are cached per process (the last few).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .imageset import DataError, ImageSet

_SPLITS = ("train", "test")
_SPLIT_STREAM = {"train": 0, "test": 1}


def check_split(dataset: str, split: str) -> str:
    """``split`` normalised (``"train"`` or ``"test"``); DataError naming ``dataset`` else."""
    split = (split or "").strip().lower()
    if split not in _SPLITS:
        raise DataError(
            f"{dataset}: unknown split {split!r}; choose train or test "
            "(disjoint identities / videos)"
        )
    return split


def split_rng(seed: int, split: str, stream: int) -> np.random.Generator:
    """Generator ``stream`` of ``split`` under ``seed`` (disjoint across splits and streams)."""
    return np.random.default_rng([int(seed), _SPLIT_STREAM[split], stream, 4004])


_CACHE: dict[tuple, ImageSet] = {}
_CACHE_MAX = 4


def cached(key: tuple, make: Callable[[], ImageSet]) -> ImageSet:
    """Generation takes seconds; one process (a benchmark) often asks for the same set again.
    Returns a copy whose arrays can be modified freely."""
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    src = _CACHE[key]
    meta = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in src.meta.items()}
    return ImageSet(images=src.images.copy(), labels=None, name=src.name, meta=meta)
