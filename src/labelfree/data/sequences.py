"""Frame sequences: the dataset type for video data and a synthetic posture benchmark.

This module re-exports, from where they live:

- :mod:`labelfree.data.sequence_type` — **the dataset type**: a frame-sequence collection is an
  ordinary :class:`ImageSet` whose ``meta`` holds per-frame ``"video"`` and ``"frame"`` arrays
  (:func:`check_sequences` validates them); :func:`mirror_images`; :class:`Exemplars`.
- :mod:`labelfree.data.pose_figure` — the articulated figure of the synthetic set:
  :data:`ANGLE_NAMES`, :data:`JOINT_NAMES`, :data:`ACTIONS`, :func:`pose_keypoints`,
  :func:`mirror_keypoints`.
- :mod:`labelfree.data.pose_videos` — **the synthetic set** (``synthetic-poses:train|test|all``
  in :func:`labelfree.data.load_data`), which stands in for Olympic Sports (seed 001 §3.3.1):
  :func:`synthetic_poses`, :data:`SPLITS`, :data:`PER_ITEM_KEYS`. Cost: ~0.9 s per default
  split (one PIL drawing per frame), cached per process.
- :mod:`labelfree.data.olympic_sports` — **Olympic Sports** itself, read from a local copy in a
  documented layout with :func:`load_olympic_sports` (frames plus optional exemplar
  annotations).
"""

from __future__ import annotations

from .olympic_sports import load_olympic_sports
from .pose_figure import ACTIONS, ANGLE_NAMES, JOINT_NAMES, mirror_keypoints, pose_keypoints
from .pose_videos import DEFAULT_IMAGE_SIZE, PER_ITEM_KEYS, SPLITS, synthetic_poses
from .sequence_type import Exemplars, check_sequences, mirror_images

__all__ = [
    "ACTIONS",
    "ANGLE_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "Exemplars",
    "JOINT_NAMES",
    "PER_ITEM_KEYS",
    "SPLITS",
    "check_sequences",
    "load_olympic_sports",
    "mirror_images",
    "mirror_keypoints",
    "pose_keypoints",
    "synthetic_poses",
]
