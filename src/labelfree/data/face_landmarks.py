"""What the face landmark loaders share (:mod:`labelfree.data.landmark_sets`).

Landmark conventions (the 5-point names, the flip permutations of the 5- and 68-point sets),
checking a data folder, cropping a square with its landmarks, and assembling the
:class:`~labelfree.data.imageset.ImageSet` with the landmark ``meta`` every loader returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .decode import decode_image
from .imageset import DataError, ImageSet

__all__ = ["FACE5_NAMES", "MIRROR_PERM_68", "crop_with_landmarks"]

#: The five MAFL / AFLW landmarks (image left/right, as CelebA's ``lefteye``/``righteye``).
FACE5_NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
_FACE5_MIRROR = [1, 0, 2, 4, 3]


def _mirror_perm_68() -> list[int]:
    """Permutation of the iBUG 68 points under a horizontal flip."""
    perm = list(range(68))

    def swap(a: Sequence[int], b: Sequence[int]) -> None:
        for i, j in zip(a, b, strict=True):
            perm[i], perm[j] = j, i

    swap(range(0, 8), range(16, 8, -1))  # jaw
    swap(range(17, 22), range(26, 21, -1))  # brows
    swap([31, 32], [35, 34])  # nostrils
    swap([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46])  # eyes
    swap([48, 49, 50], [54, 53, 52])  # outer upper lip
    swap([59, 58], [55, 56])  # outer lower lip
    swap([60, 61], [64, 63])  # inner upper lip
    swap([67], [65])  # inner lower lip
    return perm


#: The 68-point flip permutation (300-W).
MIRROR_PERM_68 = _mirror_perm_68()


def _need(what: str, root: Path, files: Sequence[str], folders: Sequence[str], hint: str) -> None:
    if not root.is_dir():
        raise DataError(f"{what}: data root {root} is not a folder; expected {hint}")
    missing = [str(root / f) for f in files if not (root / f).is_file()]
    missing += [str(root / d) + "/" for d in folders if not (root / d).is_dir()]
    if missing:
        raise DataError(f"{what}: missing {', '.join(missing)}; expected {hint}")


def crop_with_landmarks(
    image: np.ndarray, landmarks: np.ndarray, box: tuple[int, int, int], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the square ``box = (left, top, side)`` (pixels; may extend past the image, filled
    black) and resize it to ``size``; landmarks follow.

    With pixel centres at integers, pixel ``p`` covers ``[p − ½, p + ½)``, so a point maps as
    ``p' = (p + ½ − left) · size / side − ½``.
    """
    left, top, side = (int(v) for v in box)
    pil = Image.fromarray(image).crop((left, top, left + side, top + side))
    out = np.asarray(pil.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    scale = size / side
    lm = np.asarray(landmarks, np.float64).copy()
    lm[:, 0] = (lm[:, 0] + 0.5 - left) * scale - 0.5
    lm[:, 1] = (lm[:, 1] + 0.5 - top) * scale - 0.5
    return out, lm


def _box_around(landmarks: np.ndarray, margin: float) -> tuple[int, int, int]:
    lo, hi = landmarks.min(0), landmarks.max(0)
    side = max(1, int(round(margin * float((hi - lo).max()))))
    cx, cy = (lo + hi) / 2.0
    return int(round(cx + 0.5 - side / 2)), int(round(cy + 0.5 - side / 2)), side


def _make(
    name: str,
    items: list[tuple[Path, np.ndarray, tuple[int, int, int] | None]],
    image_size: int,
    names: list[str],
    iod: tuple[int, int],
    mirror: list[int],
    margin: float,
    extra: dict,
) -> ImageSet:
    if not items:
        raise DataError(f"{name}: the split lists no images")
    images = np.empty((len(items), image_size, image_size, 3), np.uint8)
    lms = np.empty((len(items), len(names), 2), np.float32)
    for k, (path, lm, box) in enumerate(items):
        if not path.is_file():
            raise DataError(f"{name}: image {path} is missing")
        img = decode_image(path)
        images[k], lms[k] = crop_with_landmarks(
            img, lm, box if box is not None else _box_around(lm, margin), image_size
        )
    return ImageSet(
        images=images,
        labels=None,
        paths=[str(p) for p, _, _ in items],
        name=name,
        meta={
            "landmarks": lms,
            "landmark_names": list(names),
            "iod": iod,
            "mirror_perm": list(mirror),
            "hflip": False,
            "per_item": ["landmarks"],  # ImageSet.subset indexes these with the images
            **extra,
        },
    )


def _read_lines(what: str, path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{what}: cannot read {path} ({exc})") from exc
