"""The articulated figure of the synthetic posture set: joints, actions, keypoints.

A 2-D figure — torso, head, two arms and two legs with elbow/knee joints — posed by 9 joint
angles (:data:`ANGLE_NAMES`); :func:`pose_keypoints` gives its 11 keypoints
(:data:`JOINT_NAMES`) in figure units (torso length 1, origin at the hip, x to the right and y
downwards in the image). :data:`ACTIONS` are the "sports" it performs: per angle a base, an
amplitude and a phase, and a period in frames. Mirroring an image (``images[:, :, ::-1]``)
shows the pose whose keypoints have ``x`` negated; :func:`mirror_keypoints` computes that.

Rendering and the data set itself: :mod:`labelfree.data.pose_videos`.
"""

from __future__ import annotations

import numpy as np

#: The 9 joint angles (radians). Torso: lean from vertical (positive leans towards +x). Limbs:
#: upper segments measured from the torso's downward direction, lower segments relative to
#: their upper segment.
ANGLE_NAMES = (
    "torso",
    "shoulder_l",
    "elbow_l",
    "shoulder_r",
    "elbow_r",
    "hip_l",
    "knee_l",
    "hip_r",
    "knee_r",
)
#: The 11 keypoints of ``meta["keypoints"]``.
JOINT_NAMES = (
    "hip",
    "neck",
    "head",
    "elbow_l",
    "hand_l",
    "elbow_r",
    "hand_r",
    "knee_l",
    "foot_l",
    "knee_r",
    "foot_r",
)
#: Segment lengths in torso units.
_UPPER_ARM, _FOREARM, _THIGH, _SHIN, _HEAD = 0.55, 0.5, 0.65, 0.6, 0.35

# Per action: base angles, amplitudes and phases (radians) of the 9 angles, period in frames.
_PI = np.pi
ACTIONS: dict[str, dict[str, object]] = {
    "walk": {
        "base": [0.05, 0.0, 0.3, 0.0, 0.3, 0.0, -0.3, 0.0, -0.3],
        "amp": [0.03, 0.6, 0.2, 0.6, 0.2, 0.5, 0.3, 0.5, 0.3],
        "phase": [0, 0, 0, _PI, _PI, _PI, _PI / 2, 0, -_PI / 2],
        "period": 24,
    },
    "jumping-jack": {
        "base": [0.0, 1.4, 0.1, -1.4, -0.1, 0.35, 0.0, -0.35, 0.0],
        "amp": [0.0, 1.2, 0.1, -1.2, -0.1, 0.3, 0.0, -0.3, 0.0],
        "phase": [0, 0, 0, 0, 0, 0, 0, 0, 0],
        "period": 20,
    },
    "squat": {
        "base": [0.4, 1.2, 0.3, 1.2, 0.3, 0.9, -1.0, 0.9, -1.0],
        "amp": [0.35, 0.4, 0.2, 0.4, 0.2, 0.8, 0.9, 0.8, 0.9],
        "phase": [0, 0, 0, 0, 0, 0, 0, 0, 0],
        "period": 32,
    },
    "wave": {
        "base": [0.0, 0.1, 0.2, 2.4, 0.8, 0.05, 0.0, -0.05, 0.0],
        "amp": [0.05, 0.05, 0.05, 0.35, 0.6, 0.0, 0.0, 0.0, 0.0],
        "phase": [0, 0, 0, 0, _PI / 2, 0, 0, 0, 0],
        "period": 16,
    },
    "throw": {
        "base": [0.1, -0.4, 0.5, 1.8, 0.6, 0.3, -0.2, -0.3, -0.1],
        "amp": [0.3, 0.4, 0.3, 1.5, 0.6, 0.2, 0.2, 0.2, 0.1],
        "phase": [0, _PI, 0, 0, _PI / 2, 0, 0, _PI, 0],
        "period": 36,
    },
    "kick": {
        "base": [-0.2, -0.5, 0.3, 0.6, 0.3, 0.8, -0.6, -0.2, 0.0],
        "amp": [0.15, 0.3, 0.1, 0.3, 0.1, 0.8, 0.6, 0.1, 0.05],
        "phase": [0, 0, 0, _PI, 0, 0, -_PI / 2, 0, 0],
        "period": 28,
    },
}


def _rot(v: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Rotate 2-vectors ``v`` (..., 2) by angles ``a`` (...) in image coordinates (y down)."""
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def pose_keypoints(angles: np.ndarray, facing: np.ndarray | int = 1) -> np.ndarray:
    """Keypoints ``(..., 11, 2)`` in figure units (hip at the origin) of joint ``angles`` (..., 9).

    ``facing`` −1 mirrors the figure (x negated), as the renderer does for left-facing videos.
    """
    a = np.asarray(angles, dtype=np.float64)
    shape = a.shape[:-1]
    up = np.stack([np.sin(a[..., 0]), -np.cos(a[..., 0])], axis=-1)  # torso direction
    down = -up
    hip = np.zeros(shape + (2,))
    neck = hip + up
    head = neck + _HEAD * up
    pts = [hip, neck, head]
    for sh, el in ((1, 2), (3, 4)):
        upper = _rot(down, a[..., sh])
        elbow = neck + _UPPER_ARM * upper
        hand = elbow + _FOREARM * _rot(upper, a[..., el])
        pts += [elbow, hand]
    for hp, kn in ((5, 6), (7, 8)):
        thigh = _rot(down, a[..., hp])
        knee = hip + _THIGH * thigh
        foot = knee + _SHIN * _rot(thigh, a[..., kn])
        pts += [knee, foot]
    kp = np.stack(pts, axis=-2)
    f = np.asarray(facing, dtype=np.float64)
    kp[..., 0] *= f[..., None] if f.ndim else f
    return kp.astype(np.float32)


def mirror_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """The keypoints shown by the horizontally mirrored frame: x negated, identities kept.

    (A limb keeps its colour under mirroring, so the joint identities do not swap.)
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    out[..., 0] *= -1
    return out
