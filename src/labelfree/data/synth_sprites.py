"""Synthetic sprite videos: textured objects moving independently, exact flow (seed 004, Ch.8).

:func:`sprite_videos` renders short videos of 2–3 textured sprites, each of a category
(:data:`SPRITE_CATEGORIES`: one bundled scikit-image colour photo for its texture and one shape
family), moving over a static textured background (:data:`SPRITE_BACKGROUNDS`, never a sprite
source), with the exact forward optical flow, foreground mask, object ids and categories. It
stands in for the video data of seed 004 Ch.8 ("Objects from Motion": YFCC100m frames with
*estimated* optical flow) and gives the exact flow and object masks that data lacks. Train crops
textures and backgrounds from the left half of each source image, test from the right half.

Coordinates are image *pixel* coordinates ``(x, y)``: ``x`` the column, ``y`` the row, pixel
centres at integers. Sprite ``o`` at frame t is the similarity ``A_o(t): c ↦ p + s·R(θ)·c``
from canonical coordinates ``c ∈ [-1, 1]²`` to the image; rendering is by inverse mapping, so
the flow ``A_o(t+1)A_o(t)⁻¹u − u`` is exact. The set is a deterministic function of ``(split,
n_videos, frames, size, seed)``; ``train`` and ``test`` draw from disjoint random streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .imageset import DataError, ImageSet, check_pixel_memory
from .synth_common import cached, check_split, split_rng

#: Default videos per split of :func:`sprite_videos` and frames per video.
SPRITE_DEFAULT_VIDEOS = {"train": 60, "test": 15}
SPRITE_DEFAULT_FRAMES = 8

# (category name, scikit-image loader name, shape family); category id = index + 1.
_CATEGORY_SPECS = (
    ("astronaut", "astronaut", "ellipse"),
    ("cat", "chelsea", "rounded_rect"),
    ("coffee", "coffee", "star"),
    ("motorcycle", "stereo_motorcycle", "triangle"),
    ("cells", "immunohistochemistry", "cross"),
)
#: ``meta["categories"]``: index 0 is the background, then one name per sprite category.
SPRITE_CATEGORIES = ["background"] + [c[0] for c in _CATEGORY_SPECS]
#: scikit-image images the backgrounds are cropped from (disjoint from the sprite sources).
SPRITE_BACKGROUNDS = ("brick", "grass", "gravel", "rocket")
_MAX_OBJECTS = 3


@dataclass
class _Sprite:
    """One sprite of one video: category index (0-based), shape, texture crop ``(T, T, 3)`` in
    [0, 1], and per frame its centre ``(F, 2)``, angle ``(F,)`` and scale ``(F,)`` (pixels per
    canonical unit); ``moving[t]`` whether its transform changes from t to t+1."""

    category: int
    shape: str
    shape_params: np.ndarray
    texture: np.ndarray
    centre: np.ndarray
    angle: np.ndarray
    scale: np.ndarray
    moving: np.ndarray


@dataclass
class _Video:
    background: np.ndarray  # (H, W, 3) float in [0, 1]
    sprites: list[_Sprite]  # in depth order: later ones are drawn on top


@lru_cache(maxsize=16)
def _source(name: str, size: int) -> tuple[np.ndarray, bool]:
    """A bundled scikit-image picture as float RGB in [0, 1], reduced so that its short side is
    at most ``3·size``; and whether it was grey."""
    from skimage import data as skdata
    from skimage.transform import resize

    img = getattr(skdata, name)()
    img = img[0] if isinstance(img, tuple) else img
    grey = img.ndim == 2
    img = np.asarray(img, np.float64) / 255.0
    img = np.repeat(img[..., None], 3, axis=2) if grey else img[..., :3]
    short = min(img.shape[:2])
    if short > 3 * size:
        f = 3 * size / short
        img = resize(img, (round(img.shape[0] * f), round(img.shape[1] * f)), anti_aliasing=True)
    return np.clip(img, 0.0, 1.0), grey


def _half(img: np.ndarray, split: str) -> np.ndarray:
    """The left (train) or right (test) half of a source image."""
    w = img.shape[1] // 2
    return img[:, :w] if split == "train" else img[:, w:]


def _crop(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    side = int(min(side, img.shape[0], img.shape[1]))
    r0 = rng.integers(0, img.shape[0] - side + 1)
    c0 = rng.integers(0, img.shape[1] - side + 1)
    return img[r0 : r0 + side, c0 : c0 + side]


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` ``(H, W, C)`` (H, W >= 2) sampled bilinearly at columns ``x``, rows ``y``."""
    h, w = img.shape[:2]
    x, y = np.clip(x, 0.0, w - 1.0), np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - ax) + img[y0, x0 + 1] * ax
    return top * (1 - ay) + (img[y0 + 1, x0] * (1 - ax) + img[y0 + 1, x0 + 1] * ax) * ay


def _inside(shape: str, q: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Whether canonical points lie in a shape (every shape fits in ``[-1, 1]²``)."""
    if shape == "ellipse":  # q = (minor axis,)
        return cx**2 + (cy / q[0]) ** 2 <= 1.0
    if shape == "rounded_rect":  # q = (half height, corner radius); half width 1
        ex = np.maximum(np.abs(cx) - (1.0 - q[1]), 0.0)
        ey = np.maximum(np.abs(cy) - (q[0] - q[1]), 0.0)
        return ex**2 + ey**2 <= q[1] ** 2
    if shape == "star":  # q = (points, inner radius); tip on the +x axis
        alpha = np.pi / q[0]
        phi = np.mod(np.arctan2(cy, cx), 2 * alpha)
        phi = np.where(phi > alpha, 2 * alpha - phi, phi)
        rho = np.hypot(cx, cy)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        ix, iy = q[1] * np.cos(alpha), q[1] * np.sin(alpha)
        return (ix - 1.0) * py - iy * (px - 1.0) >= 0.0
    if shape == "triangle":  # q = three vertex angles, increasing, vertices on the unit circle
        vx, vy = np.cos(q), np.sin(q)
        ok = np.ones(np.shape(cx), bool)
        for i in range(3):
            j = (i + 1) % 3
            ok &= (vx[j] - vx[i]) * (cy - vy[i]) - (vy[j] - vy[i]) * (cx - vx[i]) >= 0.0
        return ok
    if shape == "cross":  # q = (arm half width,)
        ax, ay = np.abs(cx), np.abs(cy)
        return ((ax <= 1.0) & (ay <= q[0])) | ((ax <= q[0]) & (ay <= 1.0))
    raise ValueError(shape)


# Random member of each shape family (the parameters ``q`` of :func:`_inside`).
_SHAPE_DRAW: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "ellipse": lambda r: np.array([r.uniform(0.55, 1.0)]),
    "rounded_rect": lambda r: np.array([r.uniform(0.5, 0.95), r.uniform(0.15, 0.45)]),
    "star": lambda r: np.array([float(r.integers(5, 7)), r.uniform(0.45, 0.65)]),
    "triangle": lambda r: -np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + r.uniform(-0.3, 0.3, 3),
    "cross": lambda r: np.array([r.uniform(0.28, 0.45)]),
}


def _motion(
    frames: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``(F, 2)``, angle, scale and ``(F-1,)`` moving pattern of one sprite: smooth in a
    *motion clock* τ that advances by 1 on moving steps only (a still step repeats the
    transform bit for bit). Centre: constant velocity (total travel <= 0.4·size) plus a
    sinusoid; angle: slow spin plus a wobble; scale: ±8 % pulsation."""
    sc = size / 64.0
    moving = np.ones(frames - 1, bool)
    u = rng.random()
    if u < 0.2:
        moving[:] = False  # static for the whole video
    elif u < 0.6:
        run = int(rng.integers(1, max(1, (frames - 1) // 2) + 1))
        start = int(rng.integers(0, frames - run))
        moving[start : start + run] = False  # still for a run of frames
    tau = np.concatenate([[0.0], np.cumsum(moving)]).astype(np.float64)
    total = max(tau[-1], 1.0)
    speed = min(rng.uniform(0.4, 4.0) * sc, 0.4 * size / total)
    heading = rng.uniform(0, 2 * np.pi, 2)  # of the velocity, of the sinusoid
    direction, wiggle = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    amp, omega, phase = rng.uniform(0, 2.5) * sc, rng.uniform(0.3, 0.8), rng.uniform(0, 2 * np.pi)
    mid = rng.uniform(0.25, 0.75, 2) * size - 0.5
    centre = mid + speed * (tau - total / 2)[:, None] * direction
    centre = centre + amp * np.sin(omega * tau + phase)[:, None] * wiggle
    spin, wob, wob_f = rng.uniform(-0.06, 0.06), rng.uniform(0, 0.1), rng.uniform(0.2, 0.6)
    angle = rng.uniform(0, 2 * np.pi) + spin * tau + wob * np.sin(wob_f * tau)
    radius = rng.uniform(6.0, 14.0) * sc
    scale = radius * (1.0 + 0.08 * np.sin(rng.uniform(0.2, 0.6) * tau + rng.uniform(0, 6.3)))
    return centre, angle, scale, moving


def _draw_video(rng: np.random.Generator, frames: int, size: int, split: str) -> _Video:
    """All random parameters of one video (background crop, sprites, their motions)."""
    from skimage.transform import resize

    name = SPRITE_BACKGROUNDS[rng.integers(len(SPRITE_BACKGROUNDS))]
    img, grey = _source(name, size)
    half = _half(img, split)
    crop = _crop(half, int(rng.uniform(0.5, 1.0) * min(half.shape[:2])), rng)
    bg = resize(crop, (size, size), anti_aliasing=crop.shape[0] > size)
    if grey:
        bg = np.clip(bg * rng.uniform(0.45, 1.0, 3) + rng.uniform(0.0, 0.15, 3), 0.0, 1.0)
    sprites = []
    n_obj = int(rng.integers(2, _MAX_OBJECTS + 1))
    for cat in rng.choice(len(_CATEGORY_SPECS), n_obj, replace=False):
        _, src, shape = _CATEGORY_SPECS[cat]
        q = _SHAPE_DRAW[shape](rng)
        centre, angle, scale, moving = _motion(frames, size, rng)
        side = int(round(rng.uniform(2.0, 3.0) * scale[0]))
        tex = _crop(_half(_source(src, size)[0], split), max(side, 4), rng)
        sprites.append(_Sprite(int(cat), shape, q, tex, centre, angle, scale, moving))
    return _Video(bg, sprites)


def _canonical(sp: _Sprite, t: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A(t)⁻¹u``: canonical coordinates of image points ``u = (x, y)`` for sprite ``sp``."""
    c, s = np.cos(sp.angle[t]), np.sin(sp.angle[t])
    dx, dy = x - sp.centre[t, 0], y - sp.centre[t, 1]
    return (c * dx + s * dy) / sp.scale[t], (-s * dx + c * dy) / sp.scale[t]


def _forward(sp: _Sprite, t: int, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A(t)c``: image position of canonical points of sprite ``sp`` at frame t."""
    c, s, k = np.cos(sp.angle[t]), np.sin(sp.angle[t]), sp.scale[t]
    return sp.centre[t, 0] + k * (c * cx - s * cy), sp.centre[t, 1] + k * (s * cx + c * cy)


def _owner(video: _Video, t: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Object id (0 background, k = 1.. the k-th sprite) visible at image points of frame t."""
    out = np.zeros(np.shape(x), np.int16)
    for k, sp in enumerate(video.sprites, start=1):
        cx, cy = _canonical(sp, t, x, y)
        out[_inside(sp.shape, sp.shape_params, cx, cy)] = k
    return out


def _render_video(
    video: _Video,
    size: int,
    texture: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float colour ``(F, H, W, 3)``, object ids ``(F, H, W)`` int16 and exact flow
    ``(F, H, W, 2)`` float32 of a drawn video. ``texture(k, cx, cy) -> (n, 3)`` gives sprite
    k's colour at canonical points (default: its crop; tests pass one encoding ``c``)."""

    def crop_colour(k: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        tex = video.sprites[k - 1].texture  # [-1, 1]² spans the crop
        return _bilinear(tex, (cx + 1) / 2 * (tex.shape[1] - 1), (cy + 1) / 2 * (tex.shape[0] - 1))

    texture = crop_colour if texture is None else texture
    frames = len(video.sprites[0].angle)
    g = np.arange(size, dtype=np.float64)
    py, px = np.meshgrid(g, g, indexing="ij")
    colour = np.repeat(video.background[None].astype(np.float64), frames, axis=0)
    objects = np.zeros((frames, size, size), np.int16)
    for t in range(frames):
        for k, sp in enumerate(video.sprites, start=1):
            cx, cy = _canonical(sp, t, px, py)
            ins = _inside(sp.shape, sp.shape_params, cx, cy)
            objects[t][ins] = k
            colour[t][ins] = texture(k, cx[ins], cy[ins])
    flow = np.full((frames, size, size, 2), np.nan, np.float32)
    for t in range(frames - 1):
        own, nxt = objects[t], objects[t + 1]
        bg = (own == 0) & (nxt == 0)  # the background never moves
        flow[t][bg] = 0.0
        for k, sp in enumerate(video.sprites, start=1):
            sel = own == k
            if not sp.moving[t]:  # A(t+1) == A(t) exactly: the point stays at u
                flow[t][sel & (nxt == k)] = 0.0
                continue
            x0, y0 = px[sel], py[sel]
            x1, y1 = _forward(sp, t + 1, *_canonical(sp, t, x0, y0))
            ok = (x1 >= -0.5) & (x1 <= size - 0.5) & (y1 >= -0.5) & (y1 <= size - 0.5)
            ok &= _owner(video, t + 1, x1, y1) == k
            flow[t][sel] = np.where(ok[:, None], np.stack([x1 - x0, y1 - y0], 1), np.nan)
    return colour, objects, flow


def sprite_videos(
    split: str,
    n_videos: int | None = None,
    frames: int | None = None,
    size: int = 64,
    seed: int = 0,
) -> ImageSet:
    """Videos of 2–3 independently moving textured sprites over a static textured background,
    with exact forward optical flow, object masks, object ids and categories.

    Stand-in for the video data of seed 004 Ch.8 (YFCC100m frames with optical flow estimated
    by a flow method): here the flow and the object masks are exact. Sprites have a category
    (:data:`SPRITE_CATEGORIES`: texture photo + shape family); train crops textures from the
    left half of each source photo, test from the right half. Each sprite moves by its own
    smooth similarity ``A_o(t)`` (translation, rotation, mild scale; typically 0–4 px per
    frame at 64 px, up to about 6); some sprites stand still for a run of frames or the whole
    video. Sprites are drawn in a fixed depth order (later on top) and may occlude each other.

    Args:
        split: ``"train"`` or ``"test"``; the two draw disjoint videos and texture halves.
        n_videos: videos; ``None`` = :data:`SPRITE_DEFAULT_VIDEOS` (60 train, 15 test).
        frames: frames per video (at least 2); ``None`` = :data:`SPRITE_DEFAULT_FRAMES` (8).
        size: image side in pixels (at least 16); sprites are 12–28 px across at 64 px.
        seed: generator seed.

    Returns:
        An :class:`ImageSet` (no labels), name ``synthetic-sprites:<split>``, whose ``meta``
        holds ``video`` and ``frame`` (``(N,)`` int64); ``flow`` (float32 ``(N, H, W, 2)``,
        ``(dx, dy)`` in pixels, pixel centres at integers: for a sprite pixel ``u`` of frame t,
        ``A_o(t+1)A_o(t)⁻¹u − u``; 0 on the background; NaN where the point is hidden in frame
        t+1 (by another sprite, or for the background by any sprite), where it leaves the
        image, and on the last frame of each video); ``mask`` (``(N, H, W)`` bool, any
        sprite); ``objects`` (``(N, H, W)`` int16: 0 background, k the k-th sprite of the
        video in depth order); ``segmentation`` (``(N, H, W)`` int16: the visible sprite's
        category index into ``categories``, 0 background); ``categories`` (names);
        ``moving`` (``(N, 3)`` bool: sprite k-1 moves between t and t+1; False on the last
        frame and for absent sprites); ``source``, ``split``, ``seed``, ``hflip`` (False) and
        ``per_item``.

    Rendering is by inverse mapping: pixel ``u`` shows the topmost sprite whose shape contains
    ``c = A_o(t)⁻¹u``, coloured by bilinear sampling of its texture crop at ``c``, so the
    content at ``u`` in frame t is exactly the content at ``A_o(t+1)c`` in frame t+1.
    """
    split = check_split("synthetic-sprites", split)
    n_videos = SPRITE_DEFAULT_VIDEOS[split] if n_videos is None else int(n_videos)
    frames = SPRITE_DEFAULT_FRAMES if frames is None else int(frames)
    if n_videos < 1 or frames < 2 or size < 16:
        raise DataError(
            f"synthetic-sprites: need n_videos >= 1, frames >= 2, size >= 16; got {n_videos}, "
            f"{frames}, {size}"
        )
    key = ("sprites", split, n_videos, frames, int(size), int(seed))
    return cached(key, lambda: _make_sprites(split, n_videos, frames, int(size), seed))


def _make_sprites(split: str, n_videos: int, frames: int, size: int, seed: int) -> ImageSet:
    n = n_videos * frames
    # image + float32 flow + mask + objects + segmentation
    check_pixel_memory(n, size, "sprite frames", bytes_per_pixel=16)
    rng = split_rng(seed, split, 3)
    images = np.empty((n, size, size, 3), np.uint8)
    flow = np.empty((n, size, size, 2), np.float32)
    objects = np.empty((n, size, size), np.int16)
    segmentation = np.empty((n, size, size), np.int16)
    moving = np.zeros((n, _MAX_OBJECTS), bool)
    for v in range(n_videos):
        video = _draw_video(rng, frames, size, split)
        colour, obj, fl = _render_video(video, size)
        sl = slice(v * frames, (v + 1) * frames)
        images[sl] = np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8)
        flow[sl], objects[sl] = fl, obj
        lookup = np.array([0] + [sp.category + 1 for sp in video.sprites], np.int16)
        segmentation[sl] = lookup[obj]
        for k, sp in enumerate(video.sprites):
            moving[v * frames : (v + 1) * frames - 1, k] = sp.moving
    return ImageSet(
        images=images,
        labels=None,
        name=f"synthetic-sprites:{split}",
        meta={
            "source": "synthetic-sprites",
            "split": split,
            "seed": int(seed),
            "video": np.repeat(np.arange(n_videos), frames).astype(np.int64),
            "frame": np.tile(np.arange(frames), n_videos).astype(np.int64),
            "flow": flow,
            "mask": objects > 0,
            "objects": objects,
            "segmentation": segmentation,
            "categories": list(SPRITE_CATEGORIES),
            "moving": moving,
            "hflip": False,
            "per_item": ["video", "frame", "flow", "mask", "objects", "segmentation", "moving"],
        },
    )
