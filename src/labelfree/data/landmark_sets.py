"""Face landmark benchmarks of seed 004 (Ch.4–7), read from a local copy in their published
layouts. Nothing downloads.

=================  ==========================================  ================================
loader             layout under ``root``                       splits
=================  ==========================================  ================================
:func:`celeba_mafl`  ``img_align_celeba/``,                    ``train`` = MAFL training (19k),
                   ``list_landmarks_align_celeba.txt``,        ``test`` = MAFL testing (1k),
                   ``MAFL/training.txt``, ``MAFL/testing.txt``  ``celeba`` = CelebA minus the
                   (``list_eval_partition.txt`` optional)      MAFL test images (unsupervised
                                                               training set of the thesis)
:func:`aflw_mtfl`  ``training.txt``, ``testing.txt`` and the   ``train``, ``test`` (the 2,995
                   images they list (the MTFL release)         AFLW faces, 5 landmarks)
:func:`face300w`   ``afw/``, ``helen/{trainset,testset}/``,    ``train`` = AFW + Helen-train +
                   ``lfpw/{trainset,testset}/``, ``ibug/``     LFPW-train (3,148); ``test`` =
                   with ``.pts`` files beside the images       Helen-test + LFPW-test + iBUG
                                                               (689); ``common``, ``challenging``
=================  ==========================================  ================================

Every loader returns an :class:`~labelfree.data.imageset.ImageSet` of square crops resized to
``image_size`` with the same landmark conventions as :mod:`labelfree.data.synthetic`:
``meta["landmarks"]`` float32 ``(N, L, 2)`` pixel ``(x, y)`` in the *output* image (pixel centres
at integers), ``meta["landmark_names"]``, ``meta["iod"]`` (the two landmarks whose distance
normalises the error: the eye centres for the 5-point sets, the outer eye corners for 300-W, as
in the thesis's tables) and ``meta["mirror_perm"]``.

Crops (the thesis follows the released preprocessing of earlier work; the exact boxes are this
project's documented choice): CelebA's aligned 178×218 images are cropped to the fixed square
``x ∈ [19, 159), y ∈ [55, 195)``, which holds the face with the eyes ~29 % of the side apart;
AFLW and 300-W faces are cropped to a square around the annotated landmarks (side = ``margin``
× the larger side of their bounding box, centred on it; outside the photo is black).

Landmark files are read as 0-based pixel coordinates except 300-W's ``.pts`` files, whose
coordinates are 1-based (MATLAB convention of the annotation tool) and get 1 subtracted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .face_landmarks import (
    _FACE5_MIRROR,
    FACE5_NAMES,
    MIRROR_PERM_68,
    _make,
    _need,
    _read_lines,
    crop_with_landmarks,
)
from .imageset import DataError, ImageSet

__all__ = [
    "FACE5_NAMES",
    "MIRROR_PERM_68",
    "aflw_mtfl",
    "celeba_mafl",
    "crop_with_landmarks",
    "face300w",
    "LANDMARK_SETS",
    "load_landmark_set",
]

#: CelebA aligned-image crop box ``(left, top, side)``.
CELEBA_BOX = (19, 55, 140)


def celeba_mafl(
    root: str | os.PathLike[str], split: str = "train", image_size: int = 64
) -> ImageSet:
    """CelebA with the MAFL landmark split (seed 004 Ch.4 §4: train the landmarks on CelebA
    without the MAFL test images, fit the regressor on MAFL training, test on MAFL testing).

    Args:
        root: folder holding ``img_align_celeba/``, ``list_landmarks_align_celeba.txt`` and
            ``MAFL/training.txt`` + ``MAFL/testing.txt`` (one image name per line; the MAFL
            release of Zhang et al.). ``list_eval_partition.txt`` (CelebA's own split) is used
            by ``split="celeba"`` when present (its train partition only).
        split: ``"train"`` (MAFL training), ``"test"`` (MAFL testing) or ``"celeba"``.
        image_size: output side.
    """
    what = "CelebA/MAFL"
    hint = (
        "<root>/img_align_celeba/, <root>/list_landmarks_align_celeba.txt, "
        "<root>/MAFL/training.txt and <root>/MAFL/testing.txt"
    )
    root = Path(root).expanduser()
    _need(
        what,
        root,
        ["list_landmarks_align_celeba.txt", "MAFL/training.txt", "MAFL/testing.txt"],
        ["img_align_celeba"],
        hint,
    )
    if split not in ("train", "test", "celeba"):
        raise DataError(f"{what}: unknown split {split!r}; choose train, test or celeba")
    lines = _read_lines(what, root / "list_landmarks_align_celeba.txt")
    table: dict[str, np.ndarray] = {}
    order: list[str] = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != 11:
            raise DataError(
                f"{what}: {root / 'list_landmarks_align_celeba.txt'} line {lineno} is malformed: "
                f"expected a file name and 10 numbers, got {line!r}"
            )
        try:
            vals = np.array([float(v) for v in fields[1:]]).reshape(5, 2)
        except ValueError:
            raise DataError(f"{what}: non-numeric landmark on line {lineno}: {line!r}") from None
        table[fields[0]] = vals
        order.append(fields[0])
    mafl_test = [ln.split()[0] for ln in _read_lines(what, root / "MAFL/testing.txt")]
    if split == "celeba":
        excluded = set(mafl_test)
        part = root / "list_eval_partition.txt"
        if part.is_file():
            train_part = {
                ln.split()[0] for ln in _read_lines(what, part) if ln.split()[1:2] == ["0"]
            }
            names = [f for f in order if f in train_part and f not in excluded]
        else:
            names = [f for f in order if f not in excluded]
    elif split == "test":
        names = mafl_test
    else:
        names = [ln.split()[0] for ln in _read_lines(what, root / "MAFL/training.txt")]
    missing = [f for f in names if f not in table]
    if missing:
        raise DataError(
            f"{what}: {len(missing)} listed images have no landmarks in "
            f"list_landmarks_align_celeba.txt (first: {missing[0]})"
        )
    items = [(root / "img_align_celeba" / f, table[f], CELEBA_BOX) for f in names]
    return _make(
        f"celeba-mafl:{split}",
        items,
        image_size,
        FACE5_NAMES,
        (0, 1),
        _FACE5_MIRROR,
        1.0,
        {"source": "celeba-mafl", "split": split, "root": str(root)},
    )


def aflw_mtfl(
    root: str | os.PathLike[str], split: str = "test", image_size: int = 64, margin: float = 2.2
) -> ImageSet:
    """AFLW with 5 landmarks in the MTFL release layout (the 2,995-face AFLW test set used by
    seed 004 Ch.4 Table 3, Ch.5 Table 4 and Ch.7 Table 2).

    Args:
        root: folder with ``training.txt`` / ``testing.txt``; each line is
            ``path x1 … x5 y1 … y5 [attributes]`` (paths relative to ``root``, ``\\`` or ``/``
            separators), landmarks in the order left eye, right eye, nose, left and right
            mouth corner.
        split: ``"train"`` (``training.txt``) or ``"test"`` (``testing.txt``).
        image_size: output side.
        margin: crop side as a multiple of the landmarks' bounding box (2.2 frames the whole
            face: the 5 points span roughly eyes-to-mouth).
    """
    what = "AFLW (MTFL layout)"
    root = Path(root).expanduser()
    files = {"train": "training.txt", "test": "testing.txt"}
    if split not in files:
        raise DataError(f"{what}: unknown split {split!r}; choose train or test")
    _need(what, root, [files[split]], [], "<root>/training.txt, <root>/testing.txt and images")
    items = []
    for lineno, line in enumerate(_read_lines(what, root / files[split]), start=1):
        fields = line.split()
        if len(fields) < 11:
            raise DataError(
                f"{what}: {root / files[split]} line {lineno} is malformed: expected a path and "
                f"10 coordinates, got {line!r}"
            )
        try:
            xy = np.array([float(v) for v in fields[1:11]])
        except ValueError:
            raise DataError(f"{what}: non-numeric landmark on line {lineno}: {line!r}") from None
        lm = np.stack([xy[:5], xy[5:]], axis=1)
        items.append((root / fields[0].replace("\\", "/"), lm, None))
    return _make(
        f"aflw:{split}",
        items,
        image_size,
        FACE5_NAMES,
        (0, 1),
        _FACE5_MIRROR,
        margin,
        {"source": "aflw", "split": split, "root": str(root)},
    )


_300W_PARTS = {
    "train": ["afw", "helen/trainset", "lfpw/trainset"],
    "common": ["helen/testset", "lfpw/testset"],
    "challenging": ["ibug"],
    "test": ["helen/testset", "lfpw/testset", "ibug"],
}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _read_pts(path: Path) -> np.ndarray:
    lines = _read_lines("300-W", path)
    try:
        start = lines.index("{") + 1
        end = lines.index("}")
        pts = np.array([[float(v) for v in ln.split()] for ln in lines[start:end]])
    except (ValueError, IndexError):
        raise DataError(f"300-W: {path} is not a .pts file ('{{' … '}}' with x y lines)") from None
    if pts.shape != (68, 2):
        raise DataError(f"300-W: {path} holds {pts.shape[0]} points, expected 68")
    return pts - 1.0


def face300w(
    root: str | os.PathLike[str], split: str = "train", image_size: int = 64, margin: float = 1.3
) -> ImageSet:
    """300-W, 68 landmarks (seed 004 Ch.4 Table 5, Ch.7 Table 2), in the iBUG release layout.

    Args:
        root: folder holding ``afw/``, ``helen/trainset/``, ``helen/testset/``,
            ``lfpw/trainset/``, ``lfpw/testset/`` and ``ibug/``; every image has a ``.pts``
            file of the same stem beside it.
        split: ``"train"`` (3,148 images), ``"test"`` (689), or the test subsets ``"common"``
            (554) / ``"challenging"`` (135).
        image_size: output side.
        margin: crop side as a multiple of the landmarks' bounding box.

    ``meta["iod"]`` is ``(36, 45)``, the outer eye corners (the 300-W normalisation).
    """
    what = "300-W"
    root = Path(root).expanduser()
    if split not in _300W_PARTS:
        raise DataError(f"{what}: unknown split {split!r}; choose {', '.join(_300W_PARTS)}")
    _need(
        what,
        root,
        [],
        _300W_PARTS[split],
        "<root>/afw/, <root>/helen/{trainset,testset}/, <root>/lfpw/{trainset,testset}/, "
        "<root>/ibug/ with images and .pts files",
    )
    items = []
    for part in _300W_PARTS[split]:
        for pts in sorted((root / part).glob("*.pts")):
            image = next(
                (
                    pts.with_suffix(s)
                    for s in _IMAGE_SUFFIXES + tuple(x.upper() for x in _IMAGE_SUFFIXES)
                    if pts.with_suffix(s).is_file()
                ),
                None,
            )
            if image is None:
                raise DataError(f"{what}: no image beside {pts}")
            items.append((image, _read_pts(pts), None))
    return _make(
        f"300w:{split}",
        items,
        image_size,
        [f"p{i}" for i in range(68)],
        (36, 45),
        MIRROR_PERM_68,
        margin,
        {"source": "300w", "split": split, "root": str(root)},
    )


#: The landmark sets by short name (``load_data("celeba-mafl:test")``): the standard folder
#: name looked for under the data root, and the loader.
LANDMARK_SETS = {
    "celeba-mafl": ("celeba", celeba_mafl),
    "aflw": ("MTFL", aflw_mtfl),
    "300w": ("300W", face300w),
}


def load_landmark_set(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
) -> ImageSet:
    """Load ``name`` (a key of :data:`LANDMARK_SETS`) from ``root``, else from the folder in
    ``$LABELFREE_DATA_ROOT``. Either may be the set's own folder or a parent holding it under
    its standard name (``celeba``, ``MTFL``, ``300W``); the parent form is checked first."""
    folder, loader = LANDMARK_SETS[name]
    given = root if root is not None else os.environ.get("LABELFREE_DATA_ROOT") or None
    if given is None:
        raise DataError(
            f"{name}: no data root given: pass root=<folder> or set LABELFREE_DATA_ROOT to the "
            f"folder that holds {folder}/"
        )
    base = Path(given).expanduser()
    path = base / folder if (base / folder).is_dir() else base
    if not split:
        raise DataError(f"{name} needs a split, e.g. {name}:train or {name}:test")
    return loader(path, split, image_size=64 if image_size is None else int(image_size))
