"""The synthetic posture set ``synthetic-poses`` (stand-in for Olympic Sports).

``synthetic-poses:train|test|all`` in :func:`labelfree.data.load_data` stands in for Olympic
Sports (seed 001 §3.3.1), which cannot be downloaded here: the articulated figure of
:mod:`labelfree.data.pose_figure` performs one of :data:`ACTIONS` (the "sports") in each video,
moving smoothly: every angle follows ``base + amplitude·sin(ω t + phase)`` with per-video jitter
of base, amplitude, speed and start phase, plus a slow random drift. Each video also has its own
appearance (background colour and gradient, figure colour, limb width, figure size, position,
facing direction left/right), so that the same posture looks different across videos, and a
little per-frame pixel noise. Far-side (left) limbs are drawn darker than near-side ones, so
left and right are distinguishable.

Per-frame ground truth in ``meta``: ``"video"``, ``"frame"`` (the frame-sequence type of
:mod:`labelfree.data.sequence_type`), ``"angles"`` (N, 9) radians, ``"keypoints"`` (N, 11, 2)
joint positions in figure units (torso length 1, origin at the hip, x to the right and y
downwards in the image, facing applied: exactly what the frame shows, independent of figure
size and position), ``"facing"`` (+1 / −1), ``"hflip": True`` and ``"per_item"`` (the names of
the per-frame arrays, so that :meth:`ImageSet.subset` and ``per_class`` keep them aligned).
``labels`` are the action ids (``class_names`` the action names), for evaluation only.

Splits: ``train`` and ``test`` hold disjoint videos (different random streams), with the same
actions — as in Olympic Sports, where the method is trained on the frames of the sports it is
evaluated on; ``all`` is their concatenation (video ids of the test part offset). Everything is
deterministic given ``seed``.

Cost model: rendering is one PIL drawing per frame at 2× supersampling, ~0.75 ms per 48 px
frame on this project's CPU: ~0.9 s per default split (24 videos of 48 frames); splits are
cached per process.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from .imageset import DataError, ImageSet, check_pixel_memory
from .pose_figure import ACTIONS, pose_keypoints

#: Videos per action and frames per video of each split.
SPLITS: dict[str, dict[str, int]] = {
    "train": {"videos_per_action": 4, "frames": 48, "stream": 1},
    "test": {"videos_per_action": 4, "frames": 48, "stream": 2},
}
DEFAULT_IMAGE_SIZE = 48
#: The per-frame arrays of ``meta`` (indexed along with the images by ``ImageSet.subset``).
PER_ITEM_KEYS = ("video", "frame", "angles", "keypoints", "facing")


def _trajectory(
    action: str, frames: int, rng: np.random.Generator, frame_step: float = 1.0
) -> np.ndarray:
    """Joint angles ``(frames, 9)`` of one video of ``action``, with per-video jitter."""
    spec = ACTIONS[action]
    base = np.asarray(spec["base"]) + rng.normal(0.0, 0.08, 9)
    amp = np.asarray(spec["amp"]) * rng.uniform(0.8, 1.2, 9)
    phase = np.asarray(spec["phase"], dtype=np.float64)
    omega = 2 * np.pi / (float(spec["period"]) * rng.uniform(0.85, 1.15))
    t = frame_step * np.arange(frames, dtype=np.float64)[:, None]
    t = t + rng.uniform(0, float(spec["period"]))
    angles = base + amp * np.sin(omega * t + phase)
    # Slow drift: one low-frequency sinusoid per angle, amplitude ≤ 0.1 rad.
    drift_w = rng.uniform(0.01, 0.04, 9) * 2 * np.pi
    angles += rng.uniform(0.0, 0.1, 9) * np.sin(drift_w * t + rng.uniform(0, 2 * np.pi, 9))
    return angles


def _colour(rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def _segment(
    draw: ImageDraw.ImageDraw, p: np.ndarray, q: np.ndarray, col: np.ndarray, w: float
) -> None:
    """A limb from ``p`` to ``q``: a line of width ``w`` with round caps (a disc when p == q)."""
    c = tuple(int(v) for v in col) + (255,)
    if not np.array_equal(p, q):
        draw.line([tuple(p), tuple(q)], fill=c, width=int(round(w)))
    r = w / 2
    for x, y in (p, q):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)


def _render_video(
    kp: np.ndarray, size: int, rng: np.random.Generator, noise: float = 6.0
) -> np.ndarray:
    """Frames ``(T, size, size, 3)`` uint8 showing keypoints ``kp`` (T, 11, 2) (figure units)."""
    ss = 2  # supersampling factor
    big = size * ss
    dark_bg = rng.random() < 0.5
    bg_a = _colour(rng, 10, 90) if dark_bg else _colour(rng, 150, 240)
    bg_b = np.clip(bg_a + rng.normal(0, 30, 3), 0, 255)
    fig = _colour(rng, 170, 255) if dark_bg else _colour(rng, 0, 90)
    far = fig * 0.6 + bg_a * 0.4  # far-side (left) limbs: closer to the background
    unit = big * 0.22 * rng.uniform(0.85, 1.15)  # torso length in pixels
    width = max(2.0, unit * rng.uniform(0.14, 0.2))
    anchor = np.array([big / 2, big * 0.5]) + rng.normal(0, 0.04 * big, 2)
    drift = rng.normal(0, 0.01 * big, 2)
    grad = np.linspace(0.0, 1.0, size)[:, None, None] * (bg_b - bg_a) + bg_a
    background = np.broadcast_to(grad, (size, size, 3))
    frames = np.empty((len(kp), size, size, 3), dtype=np.uint8)
    for t, pts in enumerate(kp):
        hip = anchor + drift * np.sin(t / 10.0)
        xy = hip + pts * unit
        im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
        draw = ImageDraw.Draw(im)

        # Far side first, then torso and head, then the near side on top.
        for a, b, col, w in (
            (1, 3, far, width),
            (3, 4, far, width),
            (0, 7, far, width * 1.1),
            (7, 8, far, width),
            (0, 1, fig, width * 1.7),
            (2, 2, fig, unit * 0.44),  # the head: a disc
            (0, 9, fig, width * 1.1),
            (9, 10, fig, width),
            (1, 5, fig, width),
            (5, 6, fig, width),
        ):
            _segment(draw, xy[a], xy[b], col, w)
        small = np.asarray(im.resize((size, size), Image.Resampling.BOX), dtype=np.float64)
        alpha = small[..., 3:4] / 255.0
        rgb = small[..., :3] * alpha + background * (1 - alpha)  # PIL resizes RGBA premultiplied
        rgb = rgb + rng.normal(0, noise, rgb.shape)
        frames[t] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return frames


def _make_split(split: str, image_size: int, seed: int, frame_step: float) -> ImageSet:
    cfg = SPLITS[split]
    names = list(ACTIONS)
    n_frames = cfg["videos_per_action"] * len(names) * cfg["frames"]
    check_pixel_memory(n_frames, image_size, "synthetic pose frames", bytes_per_pixel=8)
    images, video, frame, angles, keypoints, facing, labels = [], [], [], [], [], [], []
    vid = 0
    for rep in range(cfg["videos_per_action"]):
        for a, action in enumerate(names):
            vrng = np.random.default_rng([seed, cfg["stream"], rep, a])
            ang = _trajectory(action, cfg["frames"], vrng, frame_step)
            face = 1 if vrng.random() < 0.5 else -1
            kp = pose_keypoints(ang, face)
            images.append(_render_video(kp, image_size, vrng))
            n = cfg["frames"]
            video.append(np.full(n, vid))
            frame.append(np.arange(n))
            angles.append(ang.astype(np.float32))
            keypoints.append(kp)
            facing.append(np.full(n, face, dtype=np.int8))
            labels.append(np.full(n, a))
            vid += 1
    return ImageSet(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        class_names=names,
        name=f"synthetic-poses:{split}",
        meta={
            "source": "synthetic-poses",
            "split": split,
            "hflip": True,
            "video": np.concatenate(video).astype(np.int64),
            "frame": np.concatenate(frame).astype(np.int64),
            "angles": np.concatenate(angles),
            "keypoints": np.concatenate(keypoints),
            "facing": np.concatenate(facing),
            "per_item": PER_ITEM_KEYS,
        },
    )


@functools.lru_cache(maxsize=8)
def _cached(split: str, image_size: int, seed: int, frame_step: float) -> ImageSet:
    return _make_split(split, image_size, seed, frame_step)


def synthetic_poses(
    split: str = "all", image_size: int | None = None, seed: int = 0, frame_step: float = 1.0
) -> ImageSet:
    """The synthetic frame-sequence posture set (see the module docstring).

    Args:
        split: ``"train"`` (24 videos: 4 per action), ``"test"`` (24 other videos, also 4
            per action) or ``"all"`` (both; test video ids follow the train ones).
        image_size: frame side in pixels; ``None`` means 48 (small enough for CPU training,
            large enough that HOG's default 5×5-cell grid sees the limbs).
        seed: generator seed; the same seed always gives the same frames.
        frame_step: time between frames in units of the actions' nominal frame period
            (periods are 16–36 frames at 1.0); 0.5 samples the same motion twice as densely,
            i.e. slower motion per frame. A sensitivity knob for local temporal pooling.
    """
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    if frame_step <= 0:
        raise DataError(f"synthetic-poses: frame_step must be positive, got {frame_step}")
    if size < 16:
        raise DataError(f"synthetic-poses: image_size {size} is too small (at least 16)")
    if split == "all":
        tr, te = _cached("train", size, seed, frame_step), _cached("test", size, seed, frame_step)
        meta = dict(tr.meta)
        for k, v in tr.meta.items():
            if k in PER_ITEM_KEYS:
                w = te.meta[k] + (tr.meta["video"].max() + 1 if k == "video" else 0)
                meta[k] = np.concatenate([v, w])
        meta["split"] = "all"
        out = ImageSet(
            images=np.concatenate([tr.images, te.images]),
            labels=np.concatenate([tr.labels, te.labels]),
            class_names=list(tr.class_names),
            name="synthetic-poses:all",
            meta=meta,
        )
    elif split in SPLITS:
        out = _cached(split, size, seed, frame_step)
    else:
        raise DataError(f"synthetic-poses: unknown split {split!r}; choose train, test or all")
    # Hand out copies so that a caller editing arrays cannot corrupt the cache.
    return ImageSet(
        images=out.images.copy(),
        labels=out.labels.copy(),
        class_names=list(out.class_names),
        name=out.name,
        meta={k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in out.meta.items()},
    )
