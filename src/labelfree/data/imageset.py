"""The in-memory image collection every stage of the pipeline consumes.

Every source (a folder, a CSV list, a bundled set, a benchmark layout) is decoded once into an
:class:`ImageSet`: a ``(N, H, W, 3)`` uint8 RGB array of equally sized images, with optional
evaluation labels. Labels are never shown to a label-free method; they exist only so that
evaluation on held-out classes can score the result.

Cost model: ``N·H·W·3`` bytes (60,000 images at 64 px = 737 MB), which is the scale this project
targets on one machine. Images are resized once, at load time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch


class DataError(ValueError):
    """Bad input data: the message names the file, folder or option at fault."""


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; elsewhere the
    physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _gib(n: float) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


def check_pixel_memory(
    n: int, side: int, what: str = "images", bytes_per_pixel: int = 3, share: float = 0.8
) -> None:
    """Refuse, before allocating, to hold ``n`` images of ``side × side`` at ``bytes_per_pixel``
    (3: decoded RGB; more where generation keeps float planes) when they would take more than
    ``share`` of the memory available now: a one-line :class:`DataError` naming
    ``--image-size``, instead of numpy's MemoryError traceback or the OOM killer."""
    need = int(n) * int(side) * int(side) * int(bytes_per_pixel)
    have = available_memory()
    if need > share * have:
        raise DataError(
            f"--image-size {side}: {n} {what} at {side}×{side} px need {_gib(need)} of memory, "
            f"this machine has {_gib(have)} available; choose a smaller --image-size"
        )


def _is_lazy(images: object) -> bool:
    """An on-disk pixel store (anything with ``take`` and ``chunks``) rather than an array."""
    return (
        hasattr(images, "take") and hasattr(images, "chunks") and not isinstance(images, np.ndarray)
    )


@dataclass
class ImageSet:
    """Equally sized RGB images with optional evaluation labels.

    Attributes:
        images: ``(N, H, W, 3)`` uint8 array, or a
            :class:`~labelfree.data.pixel_store.DiskPixels` read on demand (``streaming``).
        labels: ``(N,)`` int64 class ids, or ``None`` when the collection is unlabeled. Used for
            evaluation only.
        class_names: name of each class id, when known.
        paths: the file each image came from, when it came from files.
        name: a short description (``mnist5k:train``, a folder path, ...).
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    paths: list[str] | None = None
    name: str = "images"
    meta: dict = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        images = self.images if _is_lazy(self.images) else np.asarray(self.images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(
                f"{self.name}: images must be an (N, H, W, 3) uint8 array, "
                f"got shape {images.shape} dtype {images.dtype}"
            )
        self.images = images
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != (len(images),):
                raise DataError(
                    f"{self.name}: {labels.shape[0] if labels.ndim else 0} labels for "
                    f"{len(images)} images"
                )
            self.labels = labels.astype(np.int64)
        if self.paths is not None and len(self.paths) != len(images):
            raise DataError(f"{self.name}: {len(self.paths)} paths for {len(images)} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def streaming(self) -> bool:
        """Whether the pixels are read from disk on demand (:mod:`labelfree.data.pixel_store`)
        rather than held in memory."""
        return _is_lazy(self.images)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def subset(self, indices: np.ndarray | list[int], name: str | None = None) -> ImageSet:
        """The images at ``indices`` (labels, paths and class names follow).

        ``meta`` is copied; the per-image arrays it names in ``meta["per_item"]`` (e.g. the
        ``video`` / ``frame`` arrays of frame sequences) are indexed like the images.
        """
        idx = np.asarray(indices, dtype=np.int64)
        meta = dict(self.meta)
        for key in meta.get("per_item", ()):
            if key in meta:
                meta[key] = np.asarray(meta[key])[idx]
        return ImageSet(
            images=self.images.take(idx) if self.streaming else self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            class_names=self.class_names,
            paths=None if self.paths is None else [self.paths[i] for i in idx],
            name=name or f"{self.name}[{len(idx)}]",
            meta=meta,
        )

    def fingerprint(self) -> str:
        """A stable content hash (pixels and labels) used to key on-disk caches."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(str(tuple(self.images.shape)).encode())
            if self.streaming:  # the same digest as in memory, read a chunk at a time
                for chunk in self.images.chunks():
                    h.update(np.ascontiguousarray(chunk).data)
            else:
                h.update(np.ascontiguousarray(self.images).data)
            if self.labels is not None:
                h.update(self.labels.tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def tensor(self, indices: np.ndarray | slice | None = None) -> torch.Tensor:
        """Images as a float ``(B, 3, H, W)`` tensor in [0, 1]."""
        arr = self.images if indices is None else self.images[indices]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)

    def require(self, n: int, who: str) -> None:
        """A :class:`DataError` naming this collection unless it holds at least ``n`` images."""
        if len(self) < n:
            raise DataError(f"{self.name}: {len(self)} images, but {who} needs at least {n}")

    def per_class(self, n: int, seed: int = 0) -> ImageSet:
        """At most ``n`` images of each class, drawn at random (needs labels).

        Used to emulate the fine-grained regime of the papers (~30-60 images per class).
        """
        if self.labels is None:
            raise DataError(f"{self.name}: per-class subsampling needs labels")
        rng = np.random.default_rng(seed)
        keep = []
        for c in np.unique(self.labels):
            members = np.flatnonzero(self.labels == c)
            keep.append(np.sort(rng.permutation(members)[:n]))
        return self.subset(np.sort(np.concatenate(keep)), name=f"{self.name}:{n}-per-class")
