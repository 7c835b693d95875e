"""Data sources, decoding and augmentation.

Every source becomes an :class:`ImageSet` (``(N, H, W, 3)`` uint8 RGB plus optional evaluation
labels). :func:`load_data` is the single entry point (``"mnist5k:train"``, ``"cub200:test"``, a
folder, a list file); :class:`Augment` is the tensor-side augmentation for training.
"""

from .augment import Augment
from .benchmarks import cars196, cub200, sop
from .bundled import digits, mnist5k
from .decode import decode_image, resize_square
from .folder import load_folder, load_list
from .imageset import DataError, ImageSet
from .registry import available_datasets, load_data

__all__ = [
    "Augment",
    "DataError",
    "ImageSet",
    "available_datasets",
    "cars196",
    "cub200",
    "decode_image",
    "digits",
    "load_data",
    "load_folder",
    "load_list",
    "mnist5k",
    "resize_square",
    "sop",
]
