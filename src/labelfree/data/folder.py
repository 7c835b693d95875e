"""Image collections from a folder tree or a list file, and the shared decoding pool.

:func:`load_folder` (here) reads every image below a folder; :func:`load_list`
(:mod:`labelfree.data.list_file`) reads the images named in a CSV/TSV list. Both decode and
resize in a thread pool (Pillow releases the GIL while decoding and resampling) via
:func:`decode_files` (:mod:`labelfree.data.batch_decode`), which the benchmark loaders reuse;
this module re-exports those names.

Bad files never pass silently: with ``on_error="fail"`` (the default) the first unreadable file
raises :class:`~labelfree.data.imageset.DataError` naming it; with ``on_error="skip"`` unreadable
files are dropped, one warning gives their count and the first few names, and
``ImageSet.meta["skipped"]`` lists all of them.

Cost model: listing is one ``stat`` per file; decoding is one image per worker at a time, and
the output array (``N · size² · 3`` bytes) is allocated once up front.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .batch_decode import (
    MIN_IMAGE_SIDE,
    PROGRESS_MIN_ITEMS,
    OnError,
    check_image_size,
    check_on_error,
    decode_files,
    finish_imageset,
    native_side,
    sorted_names,
)
from .imageset import DataError, ImageSet
from .list_file import load_list
from .pixel_store import decode_collection

__all__ = [
    "IMAGE_EXTENSIONS",
    "MIN_IMAGE_SIDE",
    "PROGRESS_MIN_ITEMS",
    "OnError",
    "check_on_error",
    "decode_files",
    "find_images",
    "finish_imageset",
    "load_folder",
    "load_list",
    "sorted_names",
]

#: File name endings (lower case) that count as images when scanning a folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """Every image file below ``root``, sorted by relative path.

    Extensions are those of :data:`IMAGE_EXTENSIONS`, in any letter case. Hidden files and
    folders (name starting with ``.``, e.g. macOS ``._x.jpg`` resource forks) are ignored.
    Symbolic links to folders are followed once (loops are cut).
    """
    root = Path(root)
    found: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for fname in filenames:
            if fname.startswith("."):
                continue
            if os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS:
                full = Path(dirpath) / fname
                found.append((full.relative_to(root).as_posix(), full))
    found.sort(key=lambda t: t[0])
    return [p for _, p in found]


def load_folder(
    root: str | os.PathLike[str],
    image_size: int | None = 64,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
    stream: bool | None = None,
    size_cap: int | None = None,
) -> ImageSet:
    """Load every image below a folder (recursively).

    Class sub-folders are optional and only ever used as evaluation labels: when every image
    lies below a first-level sub-folder of ``root`` and there are at least two such
    sub-folders, ``labels`` are the index of that sub-folder's name in ``class_names`` (sorted,
    see :func:`sorted_names`); otherwise ``labels`` is ``None``. A single sub-folder holding
    everything carries no class information and gives ``labels=None``.

    Args:
        root: the folder.
        image_size: output side; every image is resized (shorter side) and centre-cropped to
            ``image_size × image_size``. ``None`` keeps native sizes, which must then agree.
        on_error: ``"fail"`` or ``"skip"`` unreadable files (see the module docstring).
        workers: decoding threads.
        progress: progress bar on a terminal for large folders.
        stream: keep the decoded pixels in an on-disk store read on demand
            (:mod:`labelfree.data.pixel_store`); ``None``: when they would not fit comfortably
            in memory.
        size_cap: with ``image_size=None``, choose the side from the images themselves
            (:func:`~labelfree.data.batch_decode.native_side`: their median shorter side, at
            most ``size_cap``) instead of requiring equal native sizes.

    Raises:
        DataError: missing folder, no images, an unreadable file (``"fail"``), or nothing
            readable (``"skip"``).
    """
    on_error = check_on_error(on_error)
    image_size = check_image_size(image_size)
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise DataError(f"image folder {root_path} does not exist")
    if not root_path.is_dir():
        raise DataError(f"{root_path} is not a folder")
    files = find_images(root_path)
    if not files:
        exts = " ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"image folder {root_path} contains no images (looked for: {exts})")

    rel_parts = [f.relative_to(root_path).parts for f in files]
    labels = class_names = None
    if all(len(parts) >= 2 for parts in rel_parts):
        folders = [parts[0] for parts in rel_parts]
        names = sorted_names(folders)
        if len(names) >= 2:
            class_names = names
            index = {n: i for i, n in enumerate(names)}
            labels = np.array([index[f] for f in folders], dtype=np.int64)

    abs_paths = [os.path.abspath(f) for f in files]
    if image_size is None and size_cap is not None:
        image_size = native_side(abs_paths, size_cap)
    images, kept, skipped = decode_collection(
        abs_paths, image_size, on_error, workers, progress, stream,
        description=f"reading {root_path}",
    )  # fmt: skip
    return finish_imageset(
        where=str(root_path),
        name=str(root),
        paths=abs_paths,
        images=images,
        kept=kept,
        skipped=skipped,
        total=len(files),
        labels=labels,
        class_names=class_names,
        meta={"source": "folder", "root": os.path.abspath(root_path)},
    )
