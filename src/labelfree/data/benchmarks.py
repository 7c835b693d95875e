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
from pathlib import Path

import numpy as np

from .benchmark_files import (
    BENCHMARKS,
    DEFAULT_IMAGE_SIZE,
    _build,
    _check_split,
    _in_split,
    _int_field,
    _read_table,
    _require,
    layout_error,
)
from .folder import OnError, check_on_error
from .imageset import ImageSet

__all__ = ["BENCHMARKS", "cars196", "cub200", "sop"]


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
