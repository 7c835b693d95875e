"""Synthetic faces: a deformable face-like category with exact landmarks (seed 004, Ch.4–7).

:func:`synthetic_faces` stands in for CelebA/MAFL (the landmark protocol of Ch.4–7). Every image
has a random *identity* (face shape, feature placement and sizes, skin/hair/iris/lip colours,
hair parting), a random *expression* (smile, mouth opening, eye opening, brow raise) and a
random *pose* (a yaw-like out-of-plane turn, in-plane rotation, scale, translation). Its five
landmarks (the MAFL set: eyes, nose tip, mouth corners) are known exactly, because the image is
rendered by mapping each pixel back into the face's own canonical coordinates
(:func:`_face_inverse`) and the landmarks are mapped forward through the same analytic transform
(:func:`_face_forward`).

Coordinates are image *pixel* coordinates ``(x, y)``: ``x`` the column, ``y`` the row, pixel
centres at integers. The set is a deterministic function of ``(split, n, size, seed)``; the
``train`` and ``test`` splits hold disjoint identities.
"""

from __future__ import annotations

import numpy as np

from .imageset import DataError, ImageSet, check_pixel_memory
from .synth_common import cached, check_split, split_rng

#: Landmark names of :func:`synthetic_faces`, in MAFL order. ``left``/``right`` are *image*
#: left/right (the smaller/larger ``x`` in a frontal face), as in CelebA's ``lefteye_x``.
FACE_LANDMARK_NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]

#: The landmark permutation under a horizontal flip (left <-> right).
FACE_MIRROR_PERM = [1, 0, 2, 4, 3]

#: Default number of images per split of :func:`synthetic_faces` (MAFL has 19k / 1k; these
#: are sized for CPU training).
FACE_DEFAULT_N = {"train": 5000, "test": 1000}

#: Images per identity in :func:`synthetic_faces` (identity ids are ``index // this``).
FACE_IMAGES_PER_IDENTITY = 4

#: Test identity ids start here, so train and test ids never collide.
_TEST_IDENTITY_OFFSET = 1_000_000


#: Radius (canonical units) of the sphere on which the yaw-like turn acts. The face ellipse has
#: half-width ~0.7, so with the largest turn (0.35 rad) no face point reaches the limb. The turn
#: is re-centred (the face centre stays put): one side of the face is compressed, the other
#: stretched, and the features slide towards the compressed side, as when a head turns.
_YAW_RADIUS = 1.6


def _face_identities(n_id: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Identity parameters (canonical units; y grows downwards)."""
    u = rng.uniform
    skin_base = np.stack(
        [u(0.55, 0.95, n_id), u(0.40, 0.75, n_id), u(0.30, 0.62, n_id)], axis=1
    )  # warm tones, varied brightness
    skin_base *= u(0.6, 1.05, (n_id, 1))
    hair = rng.choice(
        np.array([[0.10, 0.07, 0.05], [0.35, 0.22, 0.10], [0.75, 0.60, 0.30], [0.55, 0.25, 0.10]]),
        size=n_id,
    ) * u(0.7, 1.2, (n_id, 1))
    iris = rng.choice(
        np.array([[0.25, 0.15, 0.08], [0.20, 0.35, 0.60], [0.25, 0.45, 0.25], [0.1, 0.1, 0.1]]),
        size=n_id,
    )
    lips = np.stack([u(0.55, 0.85, n_id), u(0.20, 0.40, n_id), u(0.20, 0.40, n_id)], axis=1)
    return {
        "face_a": u(0.62, 0.78, n_id),
        "face_b": u(0.82, 0.98, n_id),
        "eye_x": u(0.25, 0.34, n_id),
        "eye_y": u(-0.24, -0.12, n_id),
        "eye_rx": u(0.10, 0.13, n_id),
        "eye_ry": u(0.05, 0.068, n_id),
        "iris_r": u(0.04, 0.052, n_id),
        "brow_dy": u(0.11, 0.15, n_id),
        "nose_y": u(0.14, 0.24, n_id),
        "nose_w": u(0.06, 0.09, n_id),
        "mouth_y": u(0.42, 0.52, n_id),
        "mouth_w": u(0.17, 0.26, n_id),
        "lip_t": u(0.025, 0.045, n_id),
        "hairline": u(-0.62, -0.42, n_id),
        "parting": rng.choice(np.array([-1.0, 1.0]), size=n_id) * u(0.05, 0.15, n_id),
        "skin": np.clip(skin_base, 0, 1),
        "hair": np.clip(hair, 0, 1),
        "iris": iris,
        "lips": lips,
    }


def _face_images_params(n: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image expression, pose and photometric parameters."""
    u = rng.uniform
    return {
        "smile": u(-0.03, 0.08, n),
        "open": np.maximum(u(-0.04, 0.07, n), 0.0),
        "eye_open": u(0.55, 1.15, n),
        "brow_raise": u(-0.02, 0.04, n),
        "yaw": u(-0.35, 0.35, n),
        "roll": np.deg2rad(u(-15.0, 15.0, n)),
        "scale": size * u(0.33, 0.41, n),
        "tx": size * u(-0.05, 0.05, n),
        "ty": size * u(-0.05, 0.05, n),
        "light": u(-1.0, 1.0, (n, 2)),
        "bg0": u(0.05, 0.95, (n, 3)),
        "bg1": u(0.05, 0.95, (n, 3)),
        "bg_dir": u(0, 2 * np.pi, n),
        "noise_seed": rng.integers(0, 2**31, n),
    }


def _face_forward(
    cx: np.ndarray, cy: np.ndarray, p: dict[str, np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical face coordinates -> image pixel coordinates (per-image params broadcast on
    the leading axis of ``cx``/``cy``)."""
    ex = lambda v: v.reshape((-1,) + (1,) * (cx.ndim - 1))  # noqa: E731
    r = _YAW_RADIUS
    yaw = ex(p["yaw"])
    xt = r * np.sin(np.arcsin(np.clip(cx / r, -1, 1)) + yaw) - r * np.sin(yaw)
    c, s = np.cos(ex(p["roll"])), np.sin(ex(p["roll"]))
    xr = c * xt - s * cy
    yr = s * xt + c * cy
    centre = (size - 1) / 2.0
    return centre + ex(p["tx"]) + ex(p["scale"]) * xr, centre + ex(p["ty"]) + ex(p["scale"]) * yr


def _face_inverse(
    px: np.ndarray, py: np.ndarray, p: dict[str, np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image pixel coordinates -> canonical coordinates, and where the pixel lies on the
    (turned) head sphere at all."""
    ex = lambda v: v.reshape((-1,) + (1,) * (px.ndim - 1))  # noqa: E731
    centre = (size - 1) / 2.0
    xr = (px - centre - ex(p["tx"])) / ex(p["scale"])
    yr = (py - centre - ex(p["ty"])) / ex(p["scale"])
    c, s = np.cos(ex(p["roll"])), np.sin(ex(p["roll"]))
    xt = c * xr + s * yr
    cy = -s * xr + c * yr
    r = _YAW_RADIUS
    xt = xt + r * np.sin(ex(p["yaw"]))  # undo the re-centring of the turn
    on_sphere = np.abs(xt) < r
    phi = np.arcsin(np.clip(xt / r, -1, 1)) - ex(p["yaw"])
    on_sphere &= np.abs(phi) < np.pi / 2
    cx = r * np.sin(phi)
    return cx, cy, on_sphere


def _face_landmarks_canonical(ident: dict, expr: dict) -> np.ndarray:
    """``(n, 5, 2)`` canonical landmark positions (MAFL order)."""
    ey = ident["eye_y"]
    mx = ident["mouth_w"] * (1.0 + 0.3 * expr["smile"])
    my = ident["mouth_y"] - expr["smile"]
    xs = np.stack([-ident["eye_x"], ident["eye_x"], 0 * ey, -mx, mx], axis=1)
    ys = np.stack([ey, ey, ident["nose_y"], my, my], axis=1)
    return np.stack([xs, ys], axis=2)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Set ``img[mask] = colour`` in place; ``colour`` is ``(3,)``, per image ``(n, 3)`` or
    per pixel ``(n, H, W, 3)``."""
    colour = np.asarray(colour, img.dtype)
    if colour.ndim == 2:
        colour = colour[:, None, None, :]
    np.copyto(img, colour, where=mask[..., None])


def _render_faces(ident: dict, expr: dict, size: int) -> np.ndarray:
    """Render a batch of faces; ``ident`` holds per-image identity parameters."""
    n = len(expr["yaw"])
    # float32 throughout: rendering needs no more, and it halves the memory traffic
    ident = {k: np.asarray(v, np.float32) for k, v in ident.items()}
    expr = {k: (v if k == "noise_seed" else np.asarray(v, np.float32)) for k, v in expr.items()}
    g = np.arange(size, dtype=np.float32)
    py, px = np.meshgrid(g, g, indexing="ij")
    px = np.broadcast_to(px, (n, size, size))
    py = np.broadcast_to(py, (n, size, size))
    x, y, on_sphere = _face_inverse(px, py, expr, size)
    e = lambda v: v.reshape(-1, 1, 1)  # noqa: E731
    ec = lambda v: v.reshape(-1, 1, 1, 3)  # noqa: E731

    # background: a linear colour gradient across the image
    t = (np.cos(e(expr["bg_dir"])) * px + np.sin(e(expr["bg_dir"])) * py) / size
    t = (t - t.min(axis=(1, 2), keepdims=True)) / (np.ptp(t, axis=(1, 2), keepdims=True) + 1e-9)
    img = ec(expr["bg0"]) * (1 - t[..., None]) + ec(expr["bg1"]) * t[..., None]
    img = img.astype(np.float32)

    a, b = e(ident["face_a"]), e(ident["face_b"])
    r2 = (x / a) ** 2 + (y / b) ** 2
    face = (r2 <= 1.0) & on_sphere
    # hair: a slightly larger ellipse behind the face, and the top of the face above a hairline
    hair_r2 = (x / (a * 1.13)) ** 2 + ((y + 0.06) / (b * 1.08)) ** 2
    hairline = e(ident["hairline"]) + e(ident["parting"]) * x + 0.25 * x**2
    hair = on_sphere & (hair_r2 <= 1.0) & (((~face) & (y < 0.15)) | (face & (y < hairline)))

    # skin with Lambertian-like shading on the head ellipsoid, light from the image direction
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    lx, ly = e(expr["light"][:, 0]), e(expr["light"][:, 1])
    shade = np.clip(0.75 + 0.2 * nz + 0.12 * (lx * x / a + ly * y / b), 0.3, 1.2)
    skin = ec(ident["skin"]) * shade[..., None]
    _paint(img, face, skin)
    hair_col = ec(ident["hair"]) * (0.85 + 0.15 * np.cos(12 * x + 4 * y))[..., None]
    _paint(img, hair, hair_col)
    inner = face & ~hair

    # eyes, irises, pupils, brows (mirror-symmetric placement)
    ex_, ey_ = e(ident["eye_x"]), e(ident["eye_y"])
    erx, ery = e(ident["eye_rx"]), e(ident["eye_ry"]) * e(expr["eye_open"])
    for side in (-1.0, 1.0):
        dx, dy = x - side * ex_, y - ey_
        eye = inner & ((dx / erx) ** 2 + (dy / ery) ** 2 <= 1.0)
        _paint(img, eye, np.array([0.93, 0.93, 0.9], np.float32))
        iris = eye & (dx**2 + dy**2 <= e(ident["iris_r"]) ** 2)
        _paint(img, iris, ident["iris"])
        pupil = eye & (dx**2 + dy**2 <= (0.45 * e(ident["iris_r"])) ** 2)
        _paint(img, pupil, np.array([0.02, 0.02, 0.02]))
        brow_y = ey_ - e(ident["brow_dy"]) - e(expr["brow_raise"]) + 0.9 * (dx / 1.0) ** 2
        brow = inner & (np.abs(y - brow_y) <= 0.022) & (np.abs(dx) <= erx * 1.25)
        _paint(img, brow, ident["hair"] * 0.8)

    # nose: a shaded ridge on the lit-away side, a bright tip and two nostrils
    ny, nw = e(ident["nose_y"]), e(ident["nose_w"])
    ridge = inner & (y > ey_ + 0.05) & (y < ny - 0.01) & (np.abs(x + 0.35 * nw) < 0.18 * nw)
    _paint(img, ridge, skin * 0.82)
    tip = inner & (x**2 + ((y - ny + 0.015) * 1.3) ** 2 <= (0.7 * nw) ** 2)
    _paint(img, tip, np.clip(skin * 1.1, 0, 1))
    for side in (-1.0, 1.0):
        nostril = inner & (
            ((x - side * 0.55 * nw) / 0.028) ** 2 + ((y - ny - 0.02) / 0.016) ** 2 <= 1
        )
        _paint(img, nostril, skin * 0.35)

    # mouth: lips between two parabolas through the corners, dark inside when open
    mw = e(ident["mouth_w"] * (1.0 + 0.3 * expr["smile"]))
    my = e(ident["mouth_y"])
    smile, opening, lt = e(expr["smile"]), e(expr["open"]), e(ident["lip_t"])
    q = np.clip(1.0 - (x / mw) ** 2, 0.0, 1.0)
    centre = my - smile * (x / mw) ** 2
    within = inner & (np.abs(x) <= mw)
    gap = opening * q
    upper = within & (y >= centre - gap / 2 - lt * np.sqrt(q) - 0.004) & (y < centre - gap / 2)
    lower = (
        within & (y > centre + gap / 2) & (y <= centre + gap / 2 + 1.3 * lt * np.sqrt(q) + 0.004)
    )
    inside = within & (y >= centre - gap / 2) & (y <= centre + gap / 2) & (gap > 1e-3)
    _paint(img, upper | lower, ec(ident["lips"]) * shade[..., None])
    _paint(img, inside, np.array([0.12, 0.03, 0.03]))

    noise = np.stack(
        [
            np.random.default_rng(int(s)).standard_normal((size, size, 3), np.float32)
            for s in expr["noise_seed"]
        ]
    )
    return np.clip(np.rint((img + 0.015 * noise) * 255.0), 0, 255).astype(np.uint8)


def synthetic_faces(split: str, n: int | None = None, size: int = 64, seed: int = 0) -> ImageSet:
    """A deformable face-like category with exact landmarks (stand-in for CelebA/MAFL).

    Args:
        split: ``"train"`` or ``"test"``; the two draw disjoint identities.
        n: number of images; ``None`` = :data:`FACE_DEFAULT_N` (5,000 train, 1,000 test).
        size: image side in pixels.
        seed: generator seed (the split selects an independent stream of it).

    Returns:
        An :class:`ImageSet` without labels whose ``meta`` holds ``landmarks`` (float32
        ``(N, 5, 2)`` pixel ``(x, y)``), ``landmark_names`` (:data:`FACE_LANDMARK_NAMES`),
        ``iod`` (indices of the two eyes: the inter-ocular distance is between them),
        ``mirror_perm`` (landmark permutation under a horizontal flip), ``identity``
        (``(N,)`` int ids, :data:`FACE_IMAGES_PER_IDENTITY` images each; test ids start at
        1,000,000 so they never collide with train ids) and ``pose`` (``(N, 3)``: yaw in radians,
        roll in radians, scale in pixels per canonical unit).

    The parameter ranges are this project's choice (the thesis uses real faces): in-plane
    roll ±15°, yaw-like turn ±0.35 rad on a sphere of radius 1.6 face units, inter-ocular
    distance 16–27 % of the image side, median 21 % (MAFL crops: ~22 %), translation ±5 % of
    the side. Predicting the mean training shape scores ~22 % IOD on the test split (1-px noisy
    true landmarks, regressed: ~6.5 %), so probes have a wide range to show progress in.
    Landmark ``nose`` is the nose tip; eyes are the pupil centres; the mouth landmarks are
    the corners where the two lips meet.
    """
    split = check_split("synthetic-faces", split)
    n = FACE_DEFAULT_N[split] if n is None else int(n)
    if n < 1 or size < 8:
        raise DataError(f"synthetic-faces: need n >= 1 and size >= 8, got n={n}, size={size}")
    return cached(
        ("faces", split, n, int(size), int(seed)), lambda: _make_faces(split, n, size, seed)
    )


def _make_faces(split: str, n: int, size: int, seed: int) -> ImageSet:
    # Rendering keeps a few float32 planes per pixel besides the uint8 image.
    check_pixel_memory(n, size, "synthetic faces", bytes_per_pixel=32)
    n_id = -(-n // FACE_IMAGES_PER_IDENTITY)
    ident_all = _face_identities(n_id, split_rng(seed, split, 0))
    expr = _face_images_params(n, size, split_rng(seed, split, 1))
    id_of = np.arange(n) // FACE_IMAGES_PER_IDENTITY
    ident = {k: v[id_of] for k, v in ident_all.items()}

    images = np.empty((n, size, size, 3), np.uint8)
    chunk = max(1, 2**18 // (size * size))
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        images[sl] = _render_faces(
            {k: v[sl] for k, v in ident.items()}, {k: v[sl] for k, v in expr.items()}, size
        )
    canon = _face_landmarks_canonical(ident, expr)
    lx, ly = _face_forward(canon[..., 0], canon[..., 1], expr, size)
    landmarks = np.stack([lx, ly], axis=2).astype(np.float32)
    offset = 0 if split == "train" else _TEST_IDENTITY_OFFSET
    return ImageSet(
        images=images,
        labels=None,
        name=f"synthetic-faces:{split}",
        meta={
            "source": "synthetic-faces",
            "split": split,
            "seed": int(seed),
            "landmarks": landmarks,
            "landmark_names": list(FACE_LANDMARK_NAMES),
            "iod": (0, 1),
            "mirror_perm": list(FACE_MIRROR_PERM),
            "identity": (id_of + offset).astype(np.int64),
            "pose": np.stack([expr["yaw"], expr["roll"], expr["scale"]], axis=1).astype(np.float32),
            "hflip": False,
            "per_item": ["landmarks", "identity", "pose"],  # ImageSet.subset indexes these
        },
    )
