"""Frame sequences: the dataset type for video data and a synthetic posture benchmark.

**The dataset type.** A frame-sequence collection is an ordinary :class:`ImageSet` whose
``meta`` holds two per-frame integer arrays: ``meta["video"]`` (video id) and
``meta["frame"]`` (frame index within the video; increasing in time, unique per video). That is
all local temporal pooling (:mod:`labelfree.structure.temporal`, seed 001 Eq. 3.9) needs;
:func:`check_sequences` validates it. Frames may be stored in any order.

**The synthetic set** (``synthetic-poses:train|test|all`` in :func:`labelfree.data.load_data`)
stands in for Olympic Sports (seed 001 §3.3.1), which cannot be downloaded here: a 2-D
articulated figure — torso, head, two arms and two legs with elbow/knee joints, 9 joint
angles — performs one of :data:`ACTIONS` (the "sports") in each video, moving smoothly: every
angle follows ``base + amplitude·sin(ω t + phase)`` with per-video jitter of base, amplitude,
speed and start phase, plus a slow random drift. Each video also has its own appearance
(background colour and gradient, figure colour, limb width, figure size, position, facing
direction left/right), so that the same posture looks different across videos, and a little
per-frame pixel noise. Far-side (left) limbs are drawn darker than near-side ones, so left and
right are distinguishable.

Per-frame ground truth in ``meta``: ``"video"``, ``"frame"``, ``"angles"`` (N, 9) radians,
``"keypoints"`` (N, 11, 2) joint positions in figure units (torso length 1, origin at the hip,
x to the right and y downwards in the image, facing applied: exactly what the frame shows,
independent of figure size and position), ``"facing"`` (+1 / −1), ``"hflip": True`` and
``"per_item"`` (the names of the per-frame arrays, so that :meth:`ImageSet.subset` and
``per_class`` keep them aligned).
``labels`` are the action ids (``class_names`` the action names), for evaluation only.
Mirroring an image (``images[:, :, ::-1]``) shows the pose whose keypoints have ``x`` negated;
:func:`mirror_keypoints` computes that.

Splits: ``train`` and ``test`` hold disjoint videos (different random streams), with the same
actions — as in Olympic Sports, where the method is trained on the frames of the sports it is
evaluated on; ``all`` is their concatenation (video ids of the test part offset). Everything is
deterministic given ``seed``.

**Olympic Sports** itself can be read from a local copy in a documented layout with
:func:`load_olympic_sports` (frames plus optional exemplar annotations).

Cost model: rendering is one PIL drawing per frame at 2× supersampling, ~0.75 ms per 48 px
frame on this project's CPU: ~0.9 s per default split (24 videos of 48 frames); splits are
cached per process.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .imageset import DataError, ImageSet, check_pixel_memory

__all__ = [
    "ACTIONS",
    "ANGLE_NAMES",
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

#: Videos per action and frames per video of each split.
SPLITS: dict[str, dict[str, int]] = {
    "train": {"videos_per_action": 4, "frames": 48, "stream": 1},
    "test": {"videos_per_action": 4, "frames": 48, "stream": 2},
}
DEFAULT_IMAGE_SIZE = 48
#: The per-frame arrays of ``meta`` (indexed along with the images by ``ImageSet.subset``).
PER_ITEM_KEYS = ("video", "frame", "angles", "keypoints", "facing")


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


#: Image file suffixes the Olympic Sports loader reads.
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _frame_number(path: Path) -> int:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    if not digits:
        raise DataError(f"{path}: a frame file name must contain its frame number")
    return int(digits)


def load_olympic_sports(
    root: str | os.PathLike[str],
    image_size: int = 64,
    sports: list[str] | None = None,
    on_error: str = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """Olympic Sports person crops (or any sports video frames) from a local folder.

    Layout (nothing is downloaded; crops as in seed 001 §3.3.1 must be made beforehand)::

        <root>/frames/<sport>/<video>/<frame>.png|jpg   one person crop per frame; the frame
                                                        number is the digits of the file name
        <root>/exemplars/<sport>.csv                    optional: the exemplar annotations

    Each annotation file has a header ``query,label,frame,flip`` and one row per labelled frame:
    ``query`` and ``frame`` are paths relative to ``frames/`` (``long_jump/v01/00042.png``),
    ``label`` is ``pos`` or ``neg``, ``flip`` is 1 when the frame matches the *mirrored* query
    (the ``flipvals`` of the CliqueCNN release's labels), else 0.

    Returns:
        An :class:`ImageSet` of all frames (sorted by sport, video, frame number) with
        ``labels`` = sport id, ``meta["video"]`` / ``meta["frame"]`` (the frame-sequence
        type), ``meta["video_names"]`` and, when annotation files exist,
        ``meta["exemplars"]`` — an :class:`~labelfree.evaluate.exemplar.Exemplars` over the
        returned order (its indices refer to this collection: subsets do not carry it).

    Raises:
        DataError: a missing folder, a sport without frames, an annotation naming a frame that
            is not in ``frames/`` (or was skipped as unreadable), or a malformed row.
    """
    import csv

    from .folder import decode_files, finish_imageset

    base = Path(root).expanduser()
    frames_dir = base / "frames"
    if not frames_dir.is_dir():
        raise DataError(f"{base}: no frames/ folder (layout: frames/<sport>/<video>/<frame>.png)")
    names = sorted(p.name for p in frames_dir.iterdir() if p.is_dir())
    if sports is not None:
        missing = sorted(set(sports) - set(names))
        if missing:
            raise DataError(f"{frames_dir}: no folder for sport(s) {', '.join(missing)}")
        names = [n for n in names if n in set(sports)]
    paths: list[Path] = []
    video, frame, labels, video_names = [], [], [], []
    for s_id, sport in enumerate(names):
        vids = sorted(p for p in (frames_dir / sport).iterdir() if p.is_dir())
        if not vids:
            raise DataError(f"{frames_dir / sport}: no video folders")
        for vdir in vids:
            files = [p for p in vdir.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES]
            files.sort(key=_frame_number)
            nums = [_frame_number(p) for p in files]
            if len(set(nums)) != len(nums):
                raise DataError(f"{vdir}: two files share a frame number")
            v_id = len(video_names)
            video_names.append(f"{sport}/{vdir.name}")
            paths += files
            video += [v_id] * len(files)
            frame += nums
            labels += [s_id] * len(files)
    if not paths:
        raise DataError(f"{frames_dir}: no frames found")
    images, kept, skipped = decode_files(
        paths,
        image_size,
        on_error=on_error,
        workers=workers,
        progress=progress,  # type: ignore[arg-type]
    )
    video_a = np.asarray(video, dtype=np.int64)[kept]
    frame_a = np.asarray(frame, dtype=np.int64)[kept]
    rel = [p.relative_to(frames_dir).as_posix() for p in paths]
    meta: dict = {
        "source": "olympic-sports",
        "hflip": True,
        "video": video_a,
        "frame": frame_a,
        "video_names": video_names,
        "per_item": ("video", "frame"),
    }
    index = {rel[k]: i for i, k in enumerate(kept)}
    ann_dir = base / "exemplars"
    if ann_dir.is_dir():
        rows: dict[int, dict[str, list]] = {}
        for sport in names:
            path = ann_dir / f"{sport}.csv"
            if not path.exists():
                continue
            with open(path, newline="") as fh:
                for line_no, row in enumerate(csv.DictReader(fh), start=2):
                    where = f"{path} line {line_no}"
                    try:
                        q, f, kind, flip = row["query"], row["frame"], row["label"], row["flip"]
                    except KeyError as exc:
                        raise DataError(f"{path}: header must be query,label,frame,flip") from exc
                    for p in (q, f):
                        if p not in index:
                            raise DataError(f"{where}: {p} is not a (readable) frame of frames/")
                    if kind not in ("pos", "neg") or flip not in ("0", "1"):
                        raise DataError(f"{where}: label must be pos|neg and flip 0|1")
                    r = rows.setdefault(index[q], {"pos": [], "neg": [], "pf": [], "nf": []})
                    r[kind].append(index[f])
                    r["pf" if kind == "pos" else "nf"].append(flip == "1")
        keep_q = [q for q, r in rows.items() if r["pos"] and r["neg"]]
        meta["exemplars"] = Exemplars(
            queries=np.asarray(keep_q, dtype=np.int64),
            positives=[np.asarray(rows[q]["pos"], dtype=np.int64) for q in keep_q],
            negatives=[np.asarray(rows[q]["neg"], dtype=np.int64) for q in keep_q],
            pos_flip=[np.asarray(rows[q]["pf"], dtype=bool) for q in keep_q],
            neg_flip=[np.asarray(rows[q]["nf"], dtype=bool) for q in keep_q],
        )
    return finish_imageset(
        where=str(base),
        name=f"olympic-sports:{base.name}",
        paths=[str(p) for p in paths],
        images=images,
        kept=kept,
        skipped=skipped,
        skipped_paths=[str(paths[i]) for i in sorted(set(range(len(paths))) - set(kept.tolist()))],
        total=len(paths),
        labels=np.asarray(labels),
        class_names=names,
        meta=meta,
    )
