"""Generated image sets with exact geometric ground truth (seed 004, Ch.4–8).

Three families stand in for the thesis's data when no real data is at hand, and give ground
truth that no real set has:

* :func:`synthetic_faces` — a deformable face-like category (the landmark protocol of Ch.4–7 on
  CelebA/MAFL). Every image has a random *identity* (face shape, feature placement and sizes,
  skin/hair/iris/lip colours, hair parting), a random *expression* (smile, mouth opening, eye
  opening, brow raise) and a random *pose* (a yaw-like out-of-plane turn, in-plane rotation,
  scale, translation). Its five landmarks (the MAFL set: eyes, nose tip, mouth corners) are
  known exactly, because the image is rendered by mapping each pixel back into the face's own
  canonical coordinates and the landmarks are mapped forward through the same analytic
  transform.
* :func:`arm_sequence` — an articulated three-segment arm anchored at the bottom left, moving
  smoothly (the "roboarm" of Ch.5 §4.1 and Ch.7 §4.3), with the exact forward optical flow
  between consecutive frames, a foreground mask and the joint / segment-centre keypoints.
* :func:`sprite_videos` — 2–3 independently moving textured objects of a few categories over a
  static textured background (seed 004 Ch.8), with exact flow, object ids and category masks
  (:mod:`labelfree.data.synth_sprites`; registered as ``synthetic-sprites:train|test``).

Coordinates everywhere are image *pixel* coordinates ``(x, y)``: ``x`` the column, ``y`` the
row, pixel centres at integers (the top-left pixel is centred on ``(0, 0)``).

All are deterministic functions of ``(split, n, size, seed)``; the ``train`` and ``test``
splits draw from disjoint random streams (disjoint identities / videos). They are registered
in :mod:`labelfree.data.registry` as ``synthetic-faces:train|test`` and
``synthetic-arm:train|test``.

The faces live in :mod:`labelfree.data.synth_faces`, the arm in :mod:`labelfree.data.synth_arm`
and what they share (splits, random streams, the cache) in :mod:`labelfree.data.synth_common`;
this module re-exports them.
"""

from __future__ import annotations

from .synth_arm import (
    ARM_DEFAULT_FRAMES,
    ARM_DEFAULT_VIDEOS,
    ARM_KEYPOINT_NAMES,
    _arm_colour,  # noqa: F401  (tests reach the renderer through this module)
    _arm_owner,  # noqa: F401
    arm_sequence,
)
from .synth_faces import (
    FACE_DEFAULT_N,
    FACE_IMAGES_PER_IDENTITY,
    FACE_LANDMARK_NAMES,
    FACE_MIRROR_PERM,
    _face_forward,  # noqa: F401  (tests reach the face geometry through this module)
    _face_images_params,  # noqa: F401
    _face_inverse,  # noqa: F401
    synthetic_faces,
)
from .synth_sprites import SPRITE_DEFAULT_FRAMES, SPRITE_DEFAULT_VIDEOS, sprite_videos

__all__ = [
    "ARM_DEFAULT_FRAMES",
    "ARM_DEFAULT_VIDEOS",
    "ARM_KEYPOINT_NAMES",
    "FACE_DEFAULT_N",
    "FACE_IMAGES_PER_IDENTITY",
    "FACE_LANDMARK_NAMES",
    "FACE_MIRROR_PERM",
    "SPRITE_DEFAULT_FRAMES",
    "SPRITE_DEFAULT_VIDEOS",
    "arm_sequence",
    "sprite_videos",
    "synthetic_faces",
]
