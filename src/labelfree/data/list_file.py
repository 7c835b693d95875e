"""Image collections named in a CSV/TSV list file (:func:`load_list`).

One image per row, ``path`` or ``path,label``, with an optional header; the format is spelled out
in :func:`load_list`. Files are decoded by :func:`~labelfree.data.batch_decode.decode_files`.

Cost model: one ``stat`` per listed file, then the decoding pool (see
:mod:`labelfree.data.batch_decode`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .batch_decode import (
    OnError,
    check_image_size,
    check_on_error,
    finish_imageset,
    native_side,
    sorted_names,
)
from .imageset import DataError, ImageSet
from .pixel_store import decode_collection

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
    stream: bool | None = None,
    size_cap: int | None = None,
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
        stream: keep the decoded pixels in an on-disk store read on demand
            (:mod:`labelfree.data.pixel_store`); ``None``: when they would not fit comfortably
            in memory.
        size_cap: with ``image_size=None``, choose the side from the images themselves
            (:func:`~labelfree.data.batch_decode.native_side`: their median shorter side, at
            most ``size_cap``) instead of requiring equal native sizes.
    """
    on_error = check_on_error(on_error)
    image_size = check_image_size(image_size)
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
    if image_size is None and size_cap is not None:
        image_size = native_side(paths, size_cap)
    images, kept, decode_skipped = decode_collection(  # an empty list gives empty arrays
        paths,
        image_size,
        on_error,
        workers,
        progress,
        stream,
        contexts=[f"{list_path} line {r[0]}" for r in present],
        description=f"reading {list_path.name}",
    )
    return finish_imageset(
        where=str(list_path),
        name=str(csv_path),
        paths=paths,
        images=images,
        kept=kept,
        skipped=skipped + decode_skipped,
        missing_paths=skipped_paths,
        total=len(rows),
        labels=labels,
        class_names=class_names,
        meta={"source": "list", "list": os.path.abspath(list_path)},
    )
