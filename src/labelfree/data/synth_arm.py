"""Synthetic arm videos: an articulated arm with exact optical flow (seed 004, Ch.5 and Ch.7).

:func:`arm_sequence` renders an articulated three-segment arm anchored at the bottom left,
moving smoothly (the "roboarm" of Ch.5 §4.1 and Ch.7 §4.3), with the exact forward optical flow
between consecutive frames, a foreground mask and the joint / segment-centre keypoints.

Coordinates are image *pixel* coordinates ``(x, y)``: ``x`` the column, ``y`` the row, pixel
centres at integers. The set is a deterministic function of ``(split, n_videos, frames, size,
seed)``; the ``train`` and ``test`` splits hold disjoint videos.
"""

from __future__ import annotations

import numpy as np

from .imageset import DataError, ImageSet, check_pixel_memory
from .synth_common import cached, check_split, split_rng

#: Keypoint names of :func:`arm_sequence`: the base, the two inner joints, the tip, and the
#: centre of each segment (the thesis's "capsule centres").
ARM_KEYPOINT_NAMES = ["base", "joint1", "joint2", "tip", "centre0", "centre1", "centre2"]

#: Default videos per split of :func:`arm_sequence` and frames per video.
ARM_DEFAULT_VIDEOS = {"train": 40, "test": 10}
ARM_DEFAULT_FRAMES = 50

# Segment geometry in units of the image side (the same arm in every video, like the thesis's
# single roboarm): lengths, capsule radii, base colours (R, G, B in [0, 1]).
_ARM_LENGTHS = np.array([0.36, 0.29, 0.22])
_ARM_RADII = np.array([0.075, 0.062, 0.052])
_ARM_COLOURS = np.array([[0.90, 0.25, 0.20], [0.25, 0.80, 0.30], [0.25, 0.45, 0.95]])
_ARM_BASE = np.array([0.14, 0.86])  # (x, y) as a fraction of the side: bottom left


def _arm_angles(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """``(frames, 3)`` absolute segment angles (radians, image axes, y down): smooth sums of
    sinusoids within joint limits (base pointing up-right, relative bends within ±100°)."""
    t = np.arange(n_frames, dtype=np.float64)
    rel = np.zeros((n_frames, 3))
    centres = np.array([-np.pi / 4, 0.0, 0.0])
    spans = np.array([0.55, 1.2, 1.3])
    for k in range(3):
        for _ in range(2):
            amp = rng.uniform(0.3, 0.6) * spans[k] / 1.2
            freq = rng.uniform(0.02, 0.07)
            rel[:, k] += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
        rel[:, k] += centres[k] + rng.uniform(-0.3, 0.3) * spans[k]
        lo, hi = centres[k] - spans[k], centres[k] + spans[k]
        rel[:, k] = lo + (hi - lo) / (1 + np.exp(-4 * (rel[:, k] - (lo + hi) / 2) / (hi - lo)))
    return np.cumsum(rel, axis=1)


def _arm_pose(angles: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions ``(..., 4, 2)`` (base, joint1, joint2, tip) in pixels and angles."""
    lengths = _ARM_LENGTHS * size
    base = _ARM_BASE * size
    steps = np.stack([np.cos(angles), np.sin(angles)], axis=-1) * lengths[:, None]
    joints = base + np.concatenate(
        [np.zeros(angles.shape[:-1] + (1, 2)), np.cumsum(steps, axis=-2)], axis=-2
    )
    return joints, angles


def _arm_local(
    px: np.ndarray, py: np.ndarray, joints: np.ndarray, angles: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Segment ``k``'s local coordinates (along, across) of image points, one pose."""
    dx, dy = px - joints[k, 0], py - joints[k, 1]
    c, s = np.cos(angles[k]), np.sin(angles[k])
    return c * dx + s * dy, -s * dx + c * dy


def _arm_owner(
    px: np.ndarray, py: np.ndarray, joints: np.ndarray, angles: np.ndarray, size: int
) -> np.ndarray:
    """Index of the topmost segment covering each point (``-1`` for background). Later
    segments are drawn on top of earlier ones."""
    owner = np.full(np.shape(px), -1, dtype=np.int64)
    for k in range(3):
        a, c = _arm_local(px, py, joints, angles, k)
        length, radius = _ARM_LENGTHS[k] * size, _ARM_RADII[k] * size
        along = np.clip(a, 0.0, length)
        inside = (a - along) ** 2 + c**2 <= radius**2
        owner[inside] = k
    return owner


def _arm_colour(
    px: np.ndarray, py: np.ndarray, joints: np.ndarray, angles: np.ndarray, size: int
) -> np.ndarray:
    """Colour ``(..., 3)`` of the arm's material at image points (background = NaN). Each
    segment's texture is a function of its local coordinates only (a brightness ramp along it,
    shading across it, and two stripes), so it moves rigidly with the segment: the colour at
    ``u`` in frame t equals the colour at ``u + flow[u]`` in frame t+1."""
    owner = _arm_owner(px, py, joints, angles, size)
    out = np.full(np.shape(px) + (3,), np.nan)
    for k in range(3):
        a, c = _arm_local(px, py, joints, angles, k)
        length, radius = _ARM_LENGTHS[k] * size, _ARM_RADII[k] * size
        ramp = 0.55 + 0.45 * np.clip(a / length, -0.3, 1.3)
        across = 1.0 - 0.35 * (c / radius) ** 2
        frac = a / length
        stripe = np.where((np.abs(frac - 1 / 3) < 0.05) | (np.abs(frac - 2 / 3) < 0.05), 0.55, 1.0)
        col = np.clip(_ARM_COLOURS[k] * (ramp * across * stripe)[..., None], 0.0, 1.0)
        out = np.where((owner == k)[..., None], col, out)
    return out


def arm_sequence(
    split: str,
    n_videos: int | None = None,
    frames: int | None = None,
    size: int = 64,
    seed: int = 0,
) -> ImageSet:
    """Videos of an articulated three-segment arm with exact forward optical flow.

    Stand-in for the thesis's roboarm (seed 004 Ch.5 §4.1: coloured capsules joined by
    angle-limited joints, anchored at the bottom left, 90×90 frames with flow). Here the
    motion is a smooth sum of sinusoids per joint rather than a physics engine; the same arm
    (lengths, radii, colours) appears in every video and only its motion differs.

    Args:
        split: ``"train"`` or ``"test"``; the two draw disjoint videos.
        n_videos: videos; ``None`` = :data:`ARM_DEFAULT_VIDEOS` (40 train, 10 test).
        frames: frames per video; ``None`` = :data:`ARM_DEFAULT_FRAMES` (50).
        size: image side in pixels.
        seed: generator seed.

    Returns:
        An :class:`ImageSet` (no labels) whose ``meta`` holds ``video`` and ``frame`` (``(N,)``
        int), ``flow`` (float32 ``(N, H, W, 2)``: for pixel ``u`` of frame t, the displacement
        ``(dx, dy)`` in pixels to the same material point in frame t+1 of the same video;
        NaN on the background, on the last frame, where the point leaves the image and where
        it is hidden in frame t+1), ``mask`` (``(N, H, W)`` bool foreground), ``keypoints``
        (float32 ``(N, 7, 2)``, :data:`ARM_KEYPOINT_NAMES`), ``keypoint_names`` and
        ``angles`` (``(N, 3)`` absolute segment angles).

    The flow is exact because each segment moves rigidly: a pixel of segment k at frame t has
    local coordinates ``l = R_kᵀ(t)(u − p_k(t))`` and lands at ``p_k(t+1) + R_k(t+1) l``.
    The background is a fixed per-video grey with faint noise (static, so its true flow is 0,
    but like the thesis it is masked out: "we ignore areas with zero flow").
    """
    split = check_split("synthetic-arm", split)
    n_videos = ARM_DEFAULT_VIDEOS[split] if n_videos is None else int(n_videos)
    frames = ARM_DEFAULT_FRAMES if frames is None else int(frames)
    if n_videos < 1 or frames < 1 or size < 16:
        raise DataError(
            f"synthetic-arm: need n_videos >= 1, frames >= 1, size >= 16; got {n_videos}, "
            f"{frames}, {size}"
        )
    key = ("arm", split, n_videos, frames, int(size), int(seed))
    return cached(key, lambda: _make_arm(split, n_videos, frames, size, seed))


def _make_arm(split: str, n_videos: int, frames: int, size: int, seed: int) -> ImageSet:
    n = n_videos * frames
    check_pixel_memory(n, size, "arm frames", bytes_per_pixel=11)  # image + float32 flow
    rng = split_rng(seed, split, 2)
    g = np.arange(size, dtype=np.float64)
    py, px = np.meshgrid(g, g, indexing="ij")
    images = np.empty((n, size, size, 3), np.uint8)
    flow = np.full((n, size, size, 2), np.nan, np.float32)
    mask = np.zeros((n, size, size), bool)
    keypoints = np.empty((n, 7, 2), np.float32)
    all_angles = np.empty((n, 3), np.float32)
    for v in range(n_videos):
        angles = _arm_angles(frames, rng)
        joints, _ = _arm_pose(angles, size)
        grey = rng.uniform(0.05, 0.3)
        bg = grey + rng.normal(0.0, 0.02, (size, size, 1)) + np.zeros((1, 1, 3))
        for f in range(frames):
            i = v * frames + f
            colour = _arm_colour(px, py, joints[f], angles[f], size)
            fg = ~np.isnan(colour[..., 0])
            img = np.where(fg[..., None], colour, bg)
            images[i] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
            mask[i] = fg
            centres = 0.5 * (joints[f, :3] + joints[f, 1:])
            keypoints[i] = np.concatenate([joints[f], centres], axis=0)
            all_angles[i] = angles[f]
            if f + 1 < frames:
                flow[i] = _arm_flow(
                    px, py, joints[f], angles[f], joints[f + 1], angles[f + 1], size
                )
    return ImageSet(
        images=images,
        labels=None,
        name=f"synthetic-arm:{split}",
        meta={
            "source": "synthetic-arm",
            "split": split,
            "seed": int(seed),
            "video": np.repeat(np.arange(n_videos), frames).astype(np.int64),
            "frame": np.tile(np.arange(frames), n_videos).astype(np.int64),
            "flow": flow,
            "mask": mask,
            "keypoints": keypoints,
            "keypoint_names": list(ARM_KEYPOINT_NAMES),
            "angles": all_angles,
            "hflip": False,
            "per_item": ["video", "frame", "flow", "mask", "keypoints", "angles"],
        },
    )


def _arm_flow(
    px: np.ndarray,
    py: np.ndarray,
    joints0: np.ndarray,
    angles0: np.ndarray,
    joints1: np.ndarray,
    angles1: np.ndarray,
    size: int,
) -> np.ndarray:
    """Exact forward flow ``(H, W, 2)`` from pose 0 to pose 1 (NaN where undefined)."""
    owner0 = _arm_owner(px, py, joints0, angles0, size)
    out = np.full(px.shape + (2,), np.nan, np.float32)
    for k in range(3):
        sel = owner0 == k
        if not sel.any():
            continue
        a, c = _arm_local(px[sel], py[sel], joints0, angles0, k)
        cs, sn = np.cos(angles1[k]), np.sin(angles1[k])
        x1 = joints1[k, 0] + cs * a - sn * c
        y1 = joints1[k, 1] + sn * a + cs * c
        visible = _arm_owner(x1, y1, joints1, angles1, size) == k
        visible &= (x1 >= -0.5) & (x1 <= size - 0.5) & (y1 >= -0.5) & (y1 <= size - 0.5)
        fx = np.where(visible, x1 - px[sel], np.nan)
        fy = np.where(visible, y1 - py[sel], np.nan)
        out[sel] = np.stack([fx, fy], axis=1)
    return out
