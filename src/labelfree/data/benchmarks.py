"""The metric-learning benchmarks, read from a local copy in their published layouts.

Nothing downloads. Each loader takes the dataset's own folder (the one the archive extracts
to) and applies the standard unseen-class split of the field (METHODS.md §0):

=========  ================================  ====================  =====================
loader     folder                            train classes         test classes
=========  ================================  ====================  =====================
cub200     ``CUB_200_2011``                  1–100 (5,864 images)  101–200 (5,924)
cars196    folder with ``cars_annos.mat``    1–98 (8,054)          99–196 (8,131)
sop        ``Stanford_Online_Products``      ``Ebay_train.txt``    ``Ebay_test.txt``
=========  ================================  ====================  =====================

``split="all"`` returns every image. Labels are ids into the split's ``class_names``, which hold
the classes present in that split in ascending original class id; ``meta["class_ids"]`` gives
the original ids. Images keep the order of the dataset's own list files.

A missing or malformed folder raises :class:`~labelfree.data.imageset.DataError` saying which
files go where; a listed image that is missing raises naming it (or is skipped with
``on_error="skip"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folder import OnError, check_on_error, decode_files, finish_imageset
from .imageset import DataError, ImageSet

__all__ = ["BENCHMARKS", "cars196", "cub200", "sop"]

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
    if paths:
        images, kept, decode_skipped = decode_files(
            paths,
            image_size,
            on_error,
            workers,
            progress,
            contexts=[f"{b.title} ({sources[i]})" for i in present],
            description=f"reading {name}:{split}",
        )
    else:
        images, kept, decode_skipped = np.empty((0, 1, 1, 3), np.uint8), np.empty(0, int), []
    dropped = sorted(set(range(len(paths))) - set(kept.tolist()))
    return finish_imageset(
        where=f"{b.title} {split} ({root})",
        name=f"{name}:{split}",
        paths=paths,
        images=images,
        kept=kept,
        skipped=skipped + decode_skipped,
        skipped_paths=skipped_paths + [paths[i] for i in dropped],
        total=len(rel_paths),
        labels=labels,
        class_names=[class_title.get(c, str(c)) for c in ids],
        meta={"source": name, "split": split, "root": str(root), "class_ids": ids},
    )


def _in_split(class_id: int, split: str, last_train: int) -> bool:
    if split == "all":
        return True
    return class_id <= last_train if split == "train" else class_id > last_train


def cub200(
    root: str | os.PathLike[str],
    split: str = "train",
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """CUB-200-2011 birds: train = classes 1–100, test = classes 101–200.

    Args:
        root: the extracted ``CUB_200_2011`` folder (holding ``images.txt``,
            ``image_class_labels.txt``, ``classes.txt`` and ``images/``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: output side (resize shorter side + centre crop); ``None`` keeps native
            sizes, which must then agree.
        on_error: ``"fail"`` or ``"skip"`` missing/unreadable images.
        workers: decoding threads.
        progress: progress bar on a terminal.
    """
    name = "cub200"
    _check_split(name, split)
    on_error = check_on_error(on_error)
    root = Path(root).expanduser()
    _require(name, root, ["images.txt", "image_class_labels.txt"], ["images"])
    images_txt = root / "images.txt"
    labels_txt = root / "image_class_labels.txt"
    image_rows = _read_table(name, root, images_txt, 2)
    label_rows = _read_table(name, root, labels_txt, 2)

    class_of: dict[int, int] = {}
    for lineno, (img_id, cls) in label_rows:
        i = _int_field(name, root, labels_txt, lineno, img_id, "image id")
        class_of[i] = _int_field(name, root, labels_txt, lineno, cls, "class id")
    class_title: dict[int, str] = {}
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        for lineno, (cls, title) in _read_table(name, root, classes_txt, 2):
            class_title[_int_field(name, root, classes_txt, lineno, cls, "class id")] = title

    entries = []
    for lineno, (img_id, rel) in image_rows:
        i = _int_field(name, root, images_txt, lineno, img_id, "image id")
        if i not in class_of:
            raise layout_error(
                name,
                root,
                f"image id {i} ({images_txt} line {lineno}) has no class in {labels_txt}",
            )
        entries.append((i, "images/" + rel.strip(), class_of[i], f"{images_txt} line {lineno}"))
    entries.sort(key=lambda e: e[0])
    chosen = [e for e in entries if _in_split(e[2], split, 100)]
    return _build(
        name,
        split,
        root,
        [e[1] for e in chosen],
        np.array([e[2] for e in chosen], dtype=np.int64),
        [e[3] for e in chosen],
        class_title,
        image_size,
        on_error,
        workers,
        progress,
    )


def _mat_scalar(value: object) -> object:
    arr = np.asarray(value).ravel()
    if arr.size != 1:
        raise ValueError(f"expected one value, got {arr.size}")
    return arr[0]


def cars196(
    root: str | os.PathLike[str],
    split: str = "train",
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """Cars196 (Stanford Cars): train = classes 1–98, test = classes 99–196.

    The metric-learning split is by class; the ``test`` flag in ``cars_annos.mat`` (the
    classification split) is ignored.

    Args:
        root: the folder holding ``cars_annos.mat`` and ``car_ims/``.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: output side (resize shorter side + centre crop).
        on_error: ``"fail"`` or ``"skip"`` missing/unreadable images.
        workers: decoding threads.
        progress: progress bar on a terminal.
    """
    from scipy.io import loadmat

    name = "cars196"
    _check_split(name, split)
    on_error = check_on_error(on_error)
    root = Path(root).expanduser()
    _require(name, root, ["cars_annos.mat"], ["car_ims"])
    mat_path = root / "cars_annos.mat"
    try:
        mat = loadmat(str(mat_path), squeeze_me=True)
    except Exception as exc:
        raise layout_error(name, root, f"cannot read {mat_path} ({exc})") from exc
    annos = mat.get("annotations")
    fields = getattr(getattr(annos, "dtype", None), "names", None) or ()
    if annos is None or "relative_im_path" not in fields or "class" not in fields:
        raise layout_error(
            name,
            root,
            f"{mat_path} has no struct array 'annotations' with fields relative_im_path and class",
        )
    annos = np.atleast_1d(annos)
    class_title: dict[int, str] = {}
    if "class_names" in mat:
        for k, title in enumerate(np.atleast_1d(mat["class_names"]).ravel(), start=1):
            class_title[k] = str(title)

    rel_paths, class_ids, sources = [], [], []
    for k, entry in enumerate(annos):
        try:
            rel = str(_mat_scalar(entry["relative_im_path"]))
            cls = int(_mat_scalar(entry["class"]))  # type: ignore[call-overload]
        except (ValueError, TypeError) as exc:
            raise layout_error(
                name, root, f"{mat_path}: annotation {k + 1} is malformed ({exc})"
            ) from exc
        if _in_split(cls, split, 98):
            rel_paths.append(rel.strip())
            class_ids.append(cls)
            sources.append(f"{mat_path} annotation {k + 1}")
    return _build(
        name,
        split,
        root,
        rel_paths,
        np.array(class_ids, dtype=np.int64),
        sources,
        class_title,
        image_size,
        on_error,
        workers,
        progress,
    )


def sop(
    root: str | os.PathLike[str],
    split: str = "train",
    image_size: int | None = DEFAULT_IMAGE_SIZE,
    on_error: OnError = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """Stanford Online Products: train = ``Ebay_train.txt`` (classes 1–11,318), test =
    ``Ebay_test.txt`` (classes 11,319–22,634).

    Class names are the product class ids as strings; ``meta["class_ids"]`` holds them as ints.

    Args:
        root: the extracted ``Stanford_Online_Products`` folder.
        split: ``"train"``, ``"test"`` or ``"all"``.
        image_size: output side (resize shorter side + centre crop).
        on_error: ``"fail"`` or ``"skip"`` missing/unreadable images.
        workers: decoding threads.
        progress: progress bar on a terminal.
    """
    name = "sop"
    _check_split(name, split)
    on_error = check_on_error(on_error)
    root = Path(root).expanduser()
    _require(name, root, ["Ebay_train.txt", "Ebay_test.txt"], [])
    files = {"train": ["Ebay_train.txt"], "test": ["Ebay_test.txt"]}.get(
        split, ["Ebay_train.txt", "Ebay_test.txt"]
    )
    rel_paths, class_ids, sources = [], [], []
    for fname in files:
        path = root / fname
        rows = _read_table(name, root, path, 4)
        if not rows:
            raise layout_error(name, root, f"{path} is empty")
        first_line, header = rows[0]
        if [h.lower() for h in header[:3]] != ["image_id", "class_id", "super_class_id"]:
            raise layout_error(
                name,
                root,
                f"{path} line {first_line} should be the header "
                f"'image_id class_id super_class_id path', got {' '.join(header)!r}",
            )
        for lineno, (_img_id, cls, _super, rel) in rows[1:]:
            class_ids.append(_int_field(name, root, path, lineno, cls, "class id"))
            rel_paths.append(rel.strip())
            sources.append(f"{path} line {lineno}")
    return _build(
        name,
        split,
        root,
        rel_paths,
        np.array(class_ids, dtype=np.int64),
        sources,
        {},
        image_size,
        on_error,
        workers,
        progress,
    )
