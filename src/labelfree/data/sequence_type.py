"""The frame-sequence dataset type: video frames as an :class:`ImageSet`, and exemplar labels.

A frame-sequence collection is an ordinary :class:`ImageSet` whose ``meta`` holds two per-frame
integer arrays: ``meta["video"]`` (video id) and ``meta["frame"]`` (frame index within the
video; increasing in time, unique per video). That is all local temporal pooling
(:mod:`labelfree.structure.temporal`, seed 001 Eq. 3.9) needs; :func:`check_sequences`
validates it. Frames may be stored in any order.

Also here: :func:`mirror_images` (every frame flipped left-right, for the mirrored-query
protocol) and :class:`Exemplars` (query frames with labelled positives and negatives, as read
by :func:`labelfree.data.olympic_sports.load_olympic_sports`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .imageset import DataError, ImageSet


@dataclass
class Exemplars:
    """Query exemplars with labelled frames (indices into one collection).

    Attributes:
        queries: ``(Q,)`` query item indices.
        positives: per query, the indices of its positive frames.
        negatives: per query, the indices of its negative frames.
        pos_flip: per query, for each positive, whether it matches the *mirrored* query.
        neg_flip: likewise for the negatives.
    """

    queries: np.ndarray
    positives: list[np.ndarray]
    negatives: list[np.ndarray]
    pos_flip: list[np.ndarray] = field(default_factory=list)
    neg_flip: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.queries)


def mirror_images(images: ImageSet) -> ImageSet:
    """The collection with every image flipped left-right (labels and meta unchanged)."""
    return ImageSet(
        images=np.ascontiguousarray(images.images[:, :, ::-1]),
        labels=images.labels,
        class_names=images.class_names,
        paths=images.paths,
        name=f"{images.name}:mirrored",
        meta=dict(images.meta),
    )


def check_sequences(images: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    """``(video, frame)`` int64 arrays of a frame-sequence collection, validated.

    Raises:
        DataError: ``meta`` lacks ``video`` / ``frame``, their length differs from the number
            of images, or a (video, frame) pair occurs twice.
    """
    if "video" not in images.meta or "frame" not in images.meta:
        raise DataError(
            f"{images.name}: not a frame-sequence collection (meta needs 'video' and 'frame' "
            "arrays, e.g. from synthetic-poses)"
        )
    video = np.asarray(images.meta["video"], dtype=np.int64)
    frame = np.asarray(images.meta["frame"], dtype=np.int64)
    if video.shape != (len(images),) or frame.shape != (len(images),):
        raise DataError(
            f"{images.name}: meta video/frame have shapes {video.shape}/{frame.shape} for "
            f"{len(images)} images"
        )
    key = video * (int(frame.max(initial=0)) + 1) + frame
    if len(np.unique(key)) != len(key):
        raise DataError(f"{images.name}: a (video, frame) pair occurs more than once")
    return video, frame
