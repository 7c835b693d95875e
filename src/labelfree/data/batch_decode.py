"""Decoding many image files in a thread pool, and assembling the :class:`ImageSet`.

:func:`decode_files` decodes and resizes in a thread pool (Pillow releases the GIL while
decoding and resampling), with a progress bar on a terminal for large collections; the folder,
list and benchmark loaders all use it. :func:`finish_imageset` turns its result into an
:class:`ImageSet`, warning about skipped files.

Bad files never pass silently: with ``on_error="fail"`` (the default) the first unreadable file
raises :class:`~labelfree.data.imageset.DataError` naming it; with ``on_error="skip"`` unreadable
files are dropped, one warning gives their count and the first few names, and
``ImageSet.meta["skipped"]`` lists all of them.

Cost model: decoding is one image per worker at a time, and the output array
(``N · size² · 3`` bytes) is allocated once up front.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from PIL import Image

from .decode import decode_image, resize_square
from .imageset import DataError, ImageSet, check_pixel_memory

OnError = Literal["fail", "skip"]

#: Show a progress bar only for collections at least this large.
PROGRESS_MIN_ITEMS = 256
#: Images with a side shorter than this are refused (or skipped under on_error="skip"): a 1×1 or
#: 2×3 "image" is a placeholder or a tracking pixel, not a picture; resizing it to image_size
#: would give a flat square that only adds noise to the neighbourhoods.
MIN_IMAGE_SIDE = 4


def check_on_error(on_error: str) -> OnError:
    """Validate the ``on_error`` option (``"fail"`` or ``"skip"``)."""
    if on_error not in ("fail", "skip"):
        raise DataError(f'on_error must be "fail" or "skip", got {on_error!r}')
    return on_error  # type: ignore[return-value]


def check_image_size(image_size: int | None) -> int | None:
    """Validate an ``image_size`` option: a positive integer, or ``None`` (native sizes)."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    if image_size <= 0:
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    return int(image_size)


def native_side(paths: Sequence[str], cap: int, sample: int = 256) -> int:
    """The output side a collection keeps when none is asked for: the median shorter side
    of (up to ``sample`` evenly spaced) images, at most ``cap``, at least
    :data:`MIN_IMAGE_SIDE`. Only headers are read. Small images keep their native size (a folder
    of 32-px images trains at 32 px: upsizing adds pixels, not information, and costs 4× the
    compute per doubling); large ones are reduced to ``cap``. The median, not the minimum, so
    that a few odd small files do not shrink everything. Unreadable files are left to the
    decoder (and ``on_error``); with none readable the side is ``cap``."""
    step = max(1, len(paths) // sample)
    sides = []
    for p in list(paths)[::step][:sample]:
        try:
            with Image.open(p) as im:
                sides.append(min(im.size))
        except Exception:  # noqa: BLE001 - reported by the decoder, per on_error
            continue
    if not sides:
        return cap
    return int(max(MIN_IMAGE_SIDE, min(cap, int(np.median(sides)))))


def sorted_names(names: Iterable[str]) -> list[str]:
    """Unique class names in a stable order.

    Names sort as strings, except that when every name is an integer (``"0"``, ``"2"``,
    ``"10"``) they sort by value, so that class id ``i`` is the ``i``-th number.
    """
    unique = set(names)
    try:
        return sorted(unique, key=lambda n: (int(n), n))
    except ValueError:
        return sorted(unique)


class _Progress:
    """A rich progress bar that is a no-op when disabled."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self._bar = None
        self._task = None
        if enabled and total >= PROGRESS_MIN_ITEMS and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def decode_files(
    paths: Sequence[str | os.PathLike[str]],
    image_size: int | None,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
    contexts: Sequence[str] | None = None,
    description: str = "decoding images",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode (and resize) many image files in a thread pool.

    Args:
        paths: image files, in the order wanted.
        image_size: side of the square output (:func:`~labelfree.data.decode.resize_square`),
            or ``None`` to keep native sizes (then all images must have the same size).
        on_error: ``"fail"`` raises on the first unreadable file (in ``paths`` order);
            ``"skip"`` leaves it out.
        workers: decoding threads (``<= 1`` decodes in the calling thread).
        progress: show a progress bar on a terminal for large collections.
        contexts: optional prefix per file for error messages (e.g. ``"list.csv line 4"``).
        description: progress bar label.

    Returns:
        ``(images, kept, skipped)``: the ``(M, H, W, 3)`` uint8 images of the readable files,
        their indices into ``paths``, and the error message of every skipped file.
    """
    on_error = check_on_error(on_error)
    image_size = check_image_size(image_size)
    n = len(paths)
    if image_size is not None:
        check_pixel_memory(n, image_size, "images")
        out: np.ndarray | None = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
        native: list[np.ndarray | None] = []
    else:
        out = None
        native = [None] * n

    def work(i: int) -> str | None:
        try:
            img = decode_image(paths[i], min_size=image_size)
            if min(img.shape[:2]) < MIN_IMAGE_SIDE:
                h, w = img.shape[:2]
                raise DataError(
                    f"{paths[i]}: image is {w}×{h} px; images need at least {MIN_IMAGE_SIDE} px "
                    "on each side"
                )
            if out is not None:
                out[i] = resize_square(img, image_size)  # type: ignore[arg-type]
            else:
                native[i] = img
            return None
        except DataError as exc:
            return f"{contexts[i]}: {exc}" if contexts is not None else str(exc)

    errors: list[tuple[int, str]] = []

    def consume(results: Iterable[str | None], bar: _Progress) -> None:
        for i, err in enumerate(results):
            if err is not None:
                if on_error == "fail":
                    raise DataError(err)
                errors.append((i, err))
            bar.advance()

    with _Progress(n, description, progress) as bar:
        if workers <= 1 or n <= 1:
            consume((work(i) for i in range(n)), bar)
        else:
            pool = ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="labelfree")
            try:
                consume(pool.map(work, range(n)), bar)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    bad = {i for i, _ in errors}
    kept = np.array([i for i in range(n) if i not in bad], dtype=np.int64)
    skipped = [msg for _, msg in errors]
    if out is not None:
        images = out if not bad else out[kept]
    else:
        arrays = [native[i] for i in kept]
        shapes = sorted({a.shape for a in arrays})  # type: ignore[union-attr]
        if len(shapes) > 1:
            first = {}
            for i in kept:
                first.setdefault(native[i].shape, str(paths[i]))  # type: ignore[union-attr]
            examples = ", ".join(f"{p} is {s[1]}x{s[0]}" for s, p in list(first.items())[:3])
            raise DataError(
                f"images have different sizes ({examples}); pass image_size=N to resize "
                "them to N x N"
            )
        images = (
            np.stack(arrays) if arrays else np.empty((0, 1, 1, 3), dtype=np.uint8)  # type: ignore[arg-type]
        )
    return images, kept, skipped


def _warn_skipped(where: str, skipped: Sequence[str], total: int) -> None:
    shown = "; ".join(skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(
        f"{where}: skipped {len(skipped)} of {total} images that could not be read: {shown}{more}",
        stacklevel=3,
    )


def finish_imageset(
    *,
    where: str,
    name: str,
    paths: Sequence[str],
    images: np.ndarray,
    kept: np.ndarray,
    skipped: list[str],
    total: int,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    meta: dict | None = None,
    missing_paths: Sequence[str] = (),
) -> ImageSet:
    """Assemble an :class:`ImageSet` from decoded files, warning about skipped ones.

    ``skipped`` are messages (for the warning); ``meta["skipped"]`` lists ``missing_paths``
    (files left out before decoding) and the ``paths`` that did not decode (not in ``kept``).
    Raises :class:`DataError` when nothing is left.
    """
    if len(kept) == 0:
        first = f" (first: {skipped[0]})" if skipped else ""
        raise DataError(f"{where}: none of the {total} images could be read{first}")
    if skipped:
        _warn_skipped(where, skipped, total)
    meta = dict(meta or {})
    undecoded = sorted(set(range(len(paths))) - set(np.asarray(kept).tolist()))
    meta["skipped"] = [str(p) for p in missing_paths] + [str(paths[i]) for i in undecoded]
    return ImageSet(
        images=images,
        labels=None if labels is None else np.asarray(labels)[kept],
        class_names=class_names,
        paths=[str(paths[i]) for i in kept],
        name=name,
        meta=meta,
    )
