"""What the metric-learning benchmark loaders share (:mod:`labelfree.data.benchmarks`).

The benchmark table (title, folder, expected layout, how to get it), layout errors that say
which files go where, reading the datasets' whitespace-separated list files, the unseen-class
split, and turning the selected image list into an :class:`~labelfree.data.imageset.ImageSet`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folder import OnError, decode_files, finish_imageset
from .imageset import DataError, ImageSet

__all__ = ["BENCHMARKS", "DEFAULT_IMAGE_SIZE", "layout_error"]

#: Default output side for benchmark images. The papers use 224/227 crops of a 256 resize;
#: this project runs on CPUs, so the default is small; pass ``image_size=224`` for the papers'.
DEFAULT_IMAGE_SIZE = 64


@dataclass(frozen=True)
class _Benchmark:
    title: str
    folder: str
    layout: str
    download: str


#: The benchmarks by short name: title, standard folder name, expected layout, how to get it.
BENCHMARKS: dict[str, _Benchmark] = {
    "cub200": _Benchmark(
        title="CUB-200-2011",
        folder="CUB_200_2011",
        layout="<root>/images.txt, <root>/image_class_labels.txt and <root>/images/ "
        "(<root>/classes.txt for class names)",
        download="download CUB_200_2011.tgz and pass the extracted CUB_200_2011 folder",
    ),
    "cars196": _Benchmark(
        title="Cars196",
        folder="cars196",
        layout="<root>/cars_annos.mat and <root>/car_ims/",
        download="download car_ims.tgz and cars_annos.mat (Stanford Cars), extract car_ims.tgz "
        "next to cars_annos.mat and pass that folder",
    ),
    "sop": _Benchmark(
        title="Stanford Online Products",
        folder="Stanford_Online_Products",
        layout="<root>/Ebay_train.txt, <root>/Ebay_test.txt and the image folders they list "
        "(<root>/bicycle_final/, <root>/cabinet_final/, ...)",
        download="download Stanford_Online_Products.zip and pass the extracted "
        "Stanford_Online_Products folder",
    ),
}

_SPLITS = ("train", "test", "all")


def layout_error(name: str, root: str | os.PathLike[str] | None, problem: str) -> DataError:
    """A :class:`DataError` for benchmark ``name`` saying what is wrong and what goes where."""
    b = BENCHMARKS[name]
    where = f" (root={root})" if root is not None else ""
    return DataError(f"{b.title}: {problem}{where}; expected {b.layout}; {b.download}")


def _check_split(name: str, split: str) -> str:
    if split not in _SPLITS:
        raise DataError(
            f"{BENCHMARKS[name].title}: unknown split {split!r}; choose train, test or all"
        )
    return split


def _require(name: str, root: Path, files: Sequence[str], folders: Sequence[str]) -> None:
    if not root.exists():
        raise layout_error(name, root, f"folder {root} does not exist")
    if not root.is_dir():
        raise layout_error(name, root, f"{root} is not a folder")
    missing = [str(root / f) for f in files if not (root / f).is_file()]
    missing += [str(root / d) + "/" for d in folders if not (root / d).is_dir()]
    if missing:
        raise layout_error(name, root, "missing " + ", ".join(missing))


def _read_table(name: str, root: Path, path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a whitespace-separated file as ``(line number, fields)``.

    The last field takes the rest of the line (paths may hold spaces).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise layout_error(name, root, f"cannot read {path} ({exc})") from exc
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=columns - 1)
        if len(fields) != columns:
            raise layout_error(
                name,
                root,
                f"{path} line {lineno} is malformed: expected {columns} fields, got {line!r}",
            )
        rows.append((lineno, fields))
    return rows


def _int_field(name: str, root: Path, path: Path, lineno: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise layout_error(
            name, root, f"{path} line {lineno} is malformed: {what} {value!r} is not an integer"
        ) from None


def _build(
    name: str,
    split: str,
    root: Path,
    rel_paths: list[str],
    class_ids: np.ndarray,
    sources: list[str],
    class_title: dict[int, str],
    image_size: int | None,
    on_error: OnError,
    workers: int,
    progress: bool,
) -> ImageSet:
    """Check, decode and label the selected images (already in canonical order)."""
    b = BENCHMARKS[name]
    if not rel_paths:
        raise layout_error(name, root, f"the {split} split lists no images")
    skipped: list[str] = []
    skipped_paths: list[str] = []
    present: list[int] = []
    full = [os.path.abspath(root / p) for p in rel_paths]
    for i, p in enumerate(full):
        if os.path.isfile(p):
            present.append(i)
            continue
        msg = f"{b.title}: image {p} listed in {sources[i]} is missing"
        if on_error == "fail":
            raise DataError(msg + f" (is {root} complete? {b.download})")
        skipped.append(msg)
        skipped_paths.append(p)

    ids = sorted(set(int(c) for c in class_ids))
    index = {c: i for i, c in enumerate(ids)}
    labels = np.array([index[int(class_ids[i])] for i in present], dtype=np.int64)
    paths = [full[i] for i in present]
    images, kept, decode_skipped = decode_files(  # an empty list gives empty arrays
        paths,
        image_size,
        on_error,
        workers,
        progress,
        contexts=[f"{b.title} ({sources[i]})" for i in present],
        description=f"reading {name}:{split}",
    )
    return finish_imageset(
        where=f"{b.title} {split} ({root})",
        name=f"{name}:{split}",
        paths=paths,
        images=images,
        kept=kept,
        skipped=skipped + decode_skipped,
        missing_paths=skipped_paths,
        total=len(rel_paths),
        labels=labels,
        class_names=[class_title.get(c, str(c)) for c in ids],
        meta={"source": name, "split": split, "root": str(root), "class_ids": ids},
    )


def _in_split(class_id: int, split: str, last_train: int) -> bool:
    if split == "all":
        return True
    return class_id <= last_train if split == "train" else class_id > last_train
