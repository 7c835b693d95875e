"""Image collections from a folder tree or a list file, and the shared decoding pool.

:func:`load_folder` reads every image below a folder; :func:`load_list` reads the images named
in a CSV/TSV list. Both decode and resize in a thread pool (Pillow releases the GIL while
decoding and resampling) via :func:`decode_files`, which the benchmark loaders reuse.

Bad files never pass silently: with ``on_error="fail"`` (the default) the first unreadable file
raises :class:`~labelfree.data.imageset.DataError` naming it; with ``on_error="skip"`` unreadable
files are dropped, one warning gives their count and the first few names, and
``ImageSet.meta["skipped"]`` lists all of them.

Cost model: listing is one ``stat`` per file; decoding is one image per worker at a time, and
the output array (``N · size² · 3`` bytes) is allocated once up front.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from .decode import decode_image, resize_square
from .imageset import DataError, ImageSet, check_pixel_memory

__all__ = [
    "IMAGE_EXTENSIONS",
    "OnError",
    "check_on_error",
    "decode_files",
    "find_images",
    "finish_imageset",
    "load_folder",
    "load_list",
    "sorted_names",
]

OnError = Literal["fail", "skip"]

#: File name endings (lower case) that count as images when scanning a folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)

#: Show a progress bar only for collections at least this large.
PROGRESS_MIN_ITEMS = 256
#: Images with a side shorter than this are refused (or skipped under on_error="skip"): a 1×1 or
#: 2×3 "image" is a placeholder or a tracking pixel, not a picture; resizing it to image_size
#: would give a flat square that only adds noise to the neighbourhoods.
MIN_IMAGE_SIDE = 4

# Words accepted as the path column's header in a list file (compared in lower case).
_PATH_HEADERS = frozenset(
    {
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "file_name",
        "filepath",
        "file_path",
        "image",
        "images",
        "image_path",
        "image_file",
        "img",
        "img_path",
        "relpath",
    }
)
_LABEL_HEADERS = frozenset({"label", "labels", "class", "class_name", "category", "target", "y"})


def check_on_error(on_error: str) -> OnError:
    """Validate the ``on_error`` option (``"fail"`` or ``"skip"``)."""
    if on_error not in ("fail", "skip"):
        raise DataError(f'on_error must be "fail" or "skip", got {on_error!r}')
    return on_error  # type: ignore[return-value]


def _check_size(image_size: int | None) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    if image_size <= 0:
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}")
    return int(image_size)


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
    image_size = _check_size(image_size)
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
    skipped_paths: list[str],
    total: int,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    meta: dict | None = None,
) -> ImageSet:
    """Assemble an :class:`ImageSet` from decoded files, warning about skipped ones.

    ``skipped`` are messages (for the warning), ``skipped_paths`` the files (for ``meta``).
    Raises :class:`DataError` when nothing is left.
    """
    if len(kept) == 0:
        first = f" (first: {skipped[0]})" if skipped else ""
        raise DataError(f"{where}: none of the {total} images could be read{first}")
    if skipped:
        _warn_skipped(where, skipped, total)
    meta = dict(meta or {})
    meta["skipped"] = list(skipped_paths)
    return ImageSet(
        images=images,
        labels=None if labels is None else np.asarray(labels)[kept],
        class_names=class_names,
        paths=[str(paths[i]) for i in kept],
        name=name,
        meta=meta,
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

    Raises:
        DataError: missing folder, no images, an unreadable file (``"fail"``), or nothing
            readable (``"skip"``).
    """
    on_error = check_on_error(on_error)
    image_size = _check_size(image_size)
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
    images, kept, skipped = decode_files(
        abs_paths, image_size, on_error, workers, progress, description=f"reading {root_path}"
    )
    skipped_set = set(range(len(files))) - set(kept.tolist())
    return finish_imageset(
        where=str(root_path),
        name=str(root),
        paths=abs_paths,
        images=images,
        kept=kept,
        skipped=skipped,
        skipped_paths=[abs_paths[i] for i in sorted(skipped_set)],
        total=len(files),
        labels=labels,
        class_names=class_names,
        meta={"source": "folder", "root": os.path.abspath(root_path)},
    )


def _looks_like_header(row: list[str], resolve: Callable[[str], Path]) -> bool:
    first = row[0].strip()
    if resolve(first).exists():
        return False
    if first.lower() in _PATH_HEADERS:
        return True
    return len(row) > 1 and row[1].strip().lower() in _LABEL_HEADERS


def load_list(
    csv_path: str | os.PathLike[str],
    image_size: int | None = 64,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """Load the images named in a list file.

    Format: one image per row, ``path`` or ``path,label``; comma-separated, or tab-separated
    for ``.tsv`` files and for files whose first row contains a tab. Fields may be quoted
    (standard CSV). Blank rows and rows starting with ``#`` are ignored. The first row is
    taken as a header when its path does not exist and it reads like one (path column named
    ``path``, ``file``, ``filename``, ``image``, ...; or label column named ``label``,
    ``class``, ...). Relative paths are relative to the list file's folder. Labels are strings
    mapped to ids in ``class_names`` (sorted, see :func:`sorted_names`); either every row has
    a label or none does.

    Args:
        csv_path: the list file.
        image_size: output side (resize shorter side + centre crop); ``None`` keeps native
            sizes, which must then agree.
        on_error: ``"fail"``: a missing or unreadable image raises :class:`DataError` naming
            the list file, the line number and the image; ``"skip"``: such rows are dropped
            with a warning and listed in ``meta["skipped"]``.
        workers: decoding threads.
        progress: progress bar on a terminal for long lists.
    """
    on_error = check_on_error(on_error)
    image_size = _check_size(image_size)
    list_path = Path(csv_path).expanduser()
    if not list_path.is_file():
        raise DataError(f"list file {list_path} does not exist")
    base = list_path.parent

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read list file {list_path}: {exc}") from exc
    lines = text.splitlines()
    content = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if list_path.suffix.lower() == ".tsv" or (content and "\t" in content[0]):
        delimiter = "\t"
    else:
        delimiter = ","

    rows: list[tuple[int, str, str | None]] = []
    first_row = True
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([line], delimiter=delimiter))
        except csv.Error as exc:
            raise DataError(f"{list_path} line {lineno}: cannot parse ({exc})") from exc
        while fields and not fields[-1].strip():
            fields.pop()
        if first_row:
            first_row = False
            if fields and _looks_like_header(fields, resolve):
                continue
        if not fields or not fields[0].strip():
            raise DataError(f"{list_path} line {lineno}: empty image path")
        if len(fields) > 2:
            raise DataError(
                f"{list_path} line {lineno}: expected 'path' or 'path{delimiter}label', "
                f"got {len(fields)} fields (quote paths that contain {delimiter!r})"
            )
        label = fields[1].strip() if len(fields) == 2 else None
        rows.append((lineno, fields[0].strip(), label))
    if not rows:
        raise DataError(f"list file {list_path} names no images")
    with_label = [r for r in rows if r[2] is not None]
    if with_label and len(with_label) != len(rows):
        missing = next(r for r in rows if r[2] is None)
        raise DataError(
            f"{list_path} line {missing[0]}: no label, but other rows have one "
            "(give every row a label or none)"
        )

    skipped: list[str] = []
    skipped_paths: list[str] = []
    present: list[tuple[int, str, str | None]] = []
    for lineno, p, label in rows:
        full = resolve(p)
        if not full.is_file():
            msg = f"{list_path} line {lineno}: image file {full} not found"
            if on_error == "fail":
                raise DataError(msg)
            skipped.append(msg)
            skipped_paths.append(os.path.abspath(full))
            continue
        present.append((lineno, os.path.abspath(full), label))

    labels = class_names = None
    if with_label:
        class_names = sorted_names(r[2] for r in rows)  # type: ignore[misc]
        index = {n: i for i, n in enumerate(class_names)}
        labels = np.array([index[r[2]] for r in present], dtype=np.int64)

    paths = [r[1] for r in present]
    if paths:
        images, kept, decode_skipped = decode_files(
            paths,
            image_size,
            on_error,
            workers,
            progress,
            contexts=[f"{list_path} line {r[0]}" for r in present],
            description=f"reading {list_path.name}",
        )
    else:
        images = np.empty((0, image_size or 1, image_size or 1, 3), dtype=np.uint8)
        kept, decode_skipped = np.empty(0, dtype=np.int64), []
    dropped = sorted(set(range(len(paths))) - set(kept.tolist()))
    return finish_imageset(
        where=str(list_path),
        name=str(csv_path),
        paths=paths,
        images=images,
        kept=kept,
        skipped=skipped + decode_skipped,
        skipped_paths=skipped_paths + [paths[i] for i in dropped],
        total=len(rows),
        labels=labels,
        class_names=class_names,
        meta={"source": "list", "list": os.path.abspath(list_path)},
    )
