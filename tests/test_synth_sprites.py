"""Synthetic sprite videos (seed 004 Ch.8): exact transport of content by the flow, the NaN and
zero-flow conventions, object / category maps, determinism and registration."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.data import available_datasets, load_data
from labelfree.data.imageset import DataError
from labelfree.data.synth_sprites import (
    _CATEGORY_SPECS,
    SPRITE_BACKGROUNDS,
    SPRITE_CATEGORIES,
    _draw_video,
    _half,
    _inside,
    _render_video,
    _source,
    sprite_videos,
)
from labelfree.data.synthetic import SPRITE_DEFAULT_FRAMES, SPRITE_DEFAULT_VIDEOS

SIZE = 64


def _videos(n: int = 5, frames: int = 6, split: str = "train", seed: int = 11) -> list:
    rng = np.random.default_rng(seed)
    return [_draw_video(rng, frames, SIZE, split) for _ in range(n)]


def _inverse(sp, t: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A(t)⁻¹u`` written out independently of the module: rotate by −θ, divide by s."""
    th, s = sp.angle[t], sp.scale[t]
    dx, dy = x - sp.centre[t, 0], y - sp.centre[t, 1]
    return (np.cos(th) * dx + np.sin(th) * dy) / s, (np.cos(th) * dy - np.sin(th) * dx) / s


def _apply(sp, t: int, cx: np.ndarray, cy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    th, s = sp.angle[t], sp.scale[t]
    x = sp.centre[t, 0] + s * (np.cos(th) * cx - np.sin(th) * cy)
    return x, sp.centre[t, 1] + s * (np.sin(th) * cx + np.cos(th) * cy)


def _owner_at(video, t: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(x), np.int64)
    for k, sp in enumerate(video.sprites, start=1):
        out[_inside(sp.shape, sp.shape_params, *_inverse(sp, t, x, y))] = k
    return out


def _coords_texture(k: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Colour that *is* the canonical coordinate (and the object id): no clipping."""
    return np.stack([cx, cy, np.full(cx.shape, float(k))], axis=-1)


def _linear_texture(k: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """A displayable colour linear in the canonical coordinates (within [0.05, 0.95])."""
    return np.stack([0.5 + 0.45 * cx, 0.5 + 0.45 * cy, 0.5 + 0.2 * (cx - cy)], axis=-1)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    g = np.arange(SIZE, dtype=np.float64)
    py, px = np.meshgrid(g, g, indexing="ij")
    return px, py


def _bilinear(img: np.ndarray, x: float, y: float) -> np.ndarray:
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    ax, ay = x - x0, y - y0
    top = img[y0, x0] * (1 - ax) + img[y0, x0 + 1] * ax
    return top * (1 - ay) + (img[y0 + 1, x0] * (1 - ax) + img[y0 + 1, x0 + 1] * ax) * ay


# --------------------------------------------------------------------------- exact transport


def test_flow_carries_canonical_coordinates_exactly():
    px, py = _grid()
    checked = moved = 0
    for video in _videos():
        colour, objects, flow = _render_video(video, SIZE, _coords_texture)
        frames = len(video.sprites[0].angle)
        for t in range(frames - 1):
            # the rendered coordinates are A(t)⁻¹u of the sprite the objects map names
            for k, sp in enumerate(video.sprites, start=1):
                sel = objects[t] == k
                cx, cy = _inverse(sp, t, px[sel], py[sel])
                np.testing.assert_allclose(colour[t][sel][:, 0], cx, atol=1e-12)
                np.testing.assert_allclose(colour[t][sel][:, 1], cy, atol=1e-12)
            fin = np.isfinite(flow[t, ..., 0])
            fg = fin & (objects[t] > 0)
            np.testing.assert_array_equal(np.isfinite(flow[t, ..., 1]), fin)
            assert np.array_equal(colour[t][..., 2][objects[t] > 0], objects[t][objects[t] > 0])
            x1 = px[fg] + flow[t, ..., 0][fg].astype(np.float64)
            y1 = py[fg] + flow[t, ..., 1][fg].astype(np.float64)
            ids = objects[t][fg]
            for k, sp in enumerate(video.sprites, start=1):
                on = ids == k
                # frame t+1's canonical map at u + flow gives back the coordinate shown at u
                cx1, cy1 = _inverse(sp, t + 1, x1[on], y1[on])
                np.testing.assert_allclose(cx1, colour[t][fg][on, 0], rtol=0, atol=1e-4)
                np.testing.assert_allclose(cy1, colour[t][fg][on, 1], rtol=0, atol=1e-4)
                # the exact landing point A(t+1)A(t)⁻¹u shows the same object in frame t+1
                if sp.moving[t]:
                    ex, ey = _apply(sp, t + 1, *_inverse(sp, t, px[fg][on], py[fg][on]))
                else:
                    ex, ey = px[fg][on], py[fg][on]
                np.testing.assert_allclose(x1[on], ex, rtol=0, atol=1e-4)
                np.testing.assert_allclose(y1[on], ey, rtol=0, atol=1e-4)
                assert np.all(_owner_at(video, t + 1, ex, ey) == k)
                checked += int(on.sum())
                moved += int((np.hypot(x1[on] - px[fg][on], y1[on] - py[fg][on]) > 0.5).sum())
    assert checked > 2000 and moved > 500


def test_rendered_colour_is_bilinear_of_next_frame_at_the_flow():
    """uint8 pixels, as the generator quantises them: with a texture linear in the canonical
    coordinates, bilinear interpolation inside one sprite is exact, so the only error is the
    rounding to uint8 (at most 1 level). Shifting by a wrong (zero) flow fails the same check."""
    px, py = _grid()
    picked = wrong = 0
    for video in _videos(4, 5, seed=3):
        colour, objects, flow = _render_video(video, SIZE, _linear_texture)
        img = np.clip(np.rint(colour * 255.0), 0, 255).astype(np.uint8).astype(np.float64)
        for t in range(len(colour) - 1):
            ys, xs = np.nonzero((objects[t] > 0) & np.isfinite(flow[t, ..., 0]))
            for y, x in list(zip(ys, xs, strict=True))[::37][:6]:  # a few, spread out
                k = objects[t][y, x]
                fx, fy = (float(v) for v in flow[t, y, x])
                x1, y1 = x + fx, y + fy
                x0, y0 = int(np.floor(x1)), int(np.floor(y1))
                if x0 < 0 or y0 < 0 or x0 + 1 >= SIZE or y0 + 1 >= SIZE:
                    continue
                if np.any(objects[t + 1][y0 : y0 + 2, x0 : x0 + 2] != k) or abs(fx) + abs(fy) < 1:
                    continue  # interpolation would mix in another surface; or a still pixel
                got = _bilinear(img[t + 1], x1, y1)
                assert np.all(np.abs(got - img[t][y, x]) <= 1.0 + 1e-9), (t, y, x, got)
                wrong += bool(np.any(np.abs(img[t + 1][y, x] - img[t][y, x]) > 1.0))
                picked += 1
    assert picked >= 20 and wrong >= picked // 2


# --------------------------------------------------------------------------- NaN and zero flow


def _leaving_video():
    """A drawn video whose first sprite is pushed out through the left edge, 5 px a frame."""
    video = _videos(1, 6, seed=8)[0]
    sp = video.sprites[0]
    sp.moving[:] = True
    sp.centre = sp.centre.copy()
    sp.centre[:, 0] = 12.0 - 5.0 * np.arange(6)
    return video


def test_nan_exactly_where_hidden_or_outside_and_background_flow_is_zero():
    px, py = _grid()
    left = 0
    for video in _videos(5, 6, seed=7) + [_leaving_video()]:
        _, objects, flow = _render_video(video, SIZE)
        assert np.isnan(flow[-1]).all()  # last frame of the video: no next frame
        for t in range(len(flow) - 1):
            nan = np.isnan(flow[t, ..., 0])
            bg = objects[t] == 0
            # background: the same pixel in t+1 shows background (flow exactly 0) or a sprite
            np.testing.assert_array_equal(nan[bg], objects[t + 1][bg] != 0)
            assert np.all(flow[t][bg & ~nan] == 0.0)
            for k, sp in enumerate(video.sprites, start=1):
                sel = objects[t] == k
                if sp.moving[t]:
                    x1, y1 = _apply(sp, t + 1, *_inverse(sp, t, px[sel], py[sel]))
                else:
                    x1, y1 = px[sel], py[sel]
                inside = (x1 >= -0.5) & (x1 <= SIZE - 0.5) & (y1 >= -0.5) & (y1 <= SIZE - 0.5)
                seen = inside & (_owner_at(video, t + 1, x1, y1) == k)
                np.testing.assert_array_equal(nan[sel], ~seen)
                left += int((~inside).sum())
    assert left > 50


def test_still_sprites_have_zero_flow_and_nan_where_covered():
    data = sprite_videos("train", n_videos=8, frames=6, seed=2)
    m = data.meta
    flow, objects, moving = m["flow"], m["objects"], m["moving"]
    last = m["frame"] == 5
    assert not moving[last].any()
    still = moving_steps = 0
    for i in np.nonzero(~last)[0]:
        for k in range(1, 4):
            sel = objects[i] == k
            if not sel.any():
                continue
            f = flow[i][sel]
            fin = np.isfinite(f[:, 0])
            if moving[i, k - 1]:
                moving_steps += int(fin.any())
                assert np.any(f[fin] != 0.0) or not fin.any()
            else:
                still += 1
                assert np.all(f[fin] == 0.0)
                np.testing.assert_array_equal(~fin, objects[i + 1][sel] != k)
    assert still >= 5 and moving_steps >= 5


# --------------------------------------------------------------------------- the ImageSet


def test_meta_layout_determinism_and_maps():
    a = sprite_videos("train", n_videos=4, frames=5, seed=1)
    b = sprite_videos("train", n_videos=4, frames=5, seed=1)
    c = sprite_videos("test", n_videos=4, frames=5, seed=1)
    n = 20
    assert a.images.shape == (n, 64, 64, 3) and a.images.dtype == np.uint8 and a.labels is None
    m = a.meta
    assert a.name == "synthetic-sprites:train" and m["source"] == "synthetic-sprites"
    assert m["split"] == "train" and m["seed"] == 1 and m["hflip"] is False
    assert m["flow"].shape == (n, 64, 64, 2) and m["flow"].dtype == np.float32
    assert m["mask"].dtype == bool and m["mask"].shape == (n, 64, 64)
    assert m["objects"].dtype == np.int16 and m["segmentation"].dtype == np.int16
    assert m["moving"].shape == (n, 3) and m["moving"].dtype == bool
    np.testing.assert_array_equal(m["video"], np.repeat(np.arange(4), 5))
    np.testing.assert_array_equal(m["frame"], np.tile(np.arange(5), 4))
    assert m["categories"] == SPRITE_CATEGORIES and m["categories"][0] == "background"
    assert all(len(m[key]) == n for key in m["per_item"])
    for key in ("flow", "objects", "segmentation", "moving"):
        np.testing.assert_array_equal(m[key], b.meta[key])
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(m["objects"], c.meta["objects"])
    for d in (a, c):
        mask, obj, seg = d.meta["mask"], d.meta["objects"], d.meta["segmentation"]
        np.testing.assert_array_equal(obj == 0, ~mask)
        np.testing.assert_array_equal(seg == 0, ~mask)
        assert seg.max() < len(SPRITE_CATEGORIES)
        for v in range(4):
            inv = d.meta["video"] == v
            cats = []
            for k in np.unique(obj[inv]):
                if k:
                    found = np.unique(seg[inv][obj[inv] == k])
                    assert len(found) == 1  # one category per object per video
                    cats.append(int(found[0]))
            assert 2 <= len(cats) <= 3
    # a modification of a returned set does not leak into the next call (cache copies)
    a.meta["flow"][:] = 0
    assert np.isnan(sprite_videos("train", n_videos=4, frames=5, seed=1).meta["flow"]).any()


def test_train_and_test_textures_come_from_disjoint_halves():
    for split in ("train", "test"):
        other = "test" if split == "train" else "train"
        for video in _videos(4, 3, split=split, seed=5):
            for sp in video.sprites:
                img = _source(_CATEGORY_SPECS[sp.category][1], SIZE)[0]
                assert np.shares_memory(sp.texture, _half(img, split))
                assert not np.shares_memory(sp.texture, _half(img, other))
    sprite_sources = {spec[1] for spec in _CATEGORY_SPECS}
    assert sprite_sources.isdisjoint(SPRITE_BACKGROUNDS)


def test_registry_defaults_and_errors():
    assert "synthetic-sprites:train" in available_datasets()
    data = load_data("synthetic-sprites:train")
    n = SPRITE_DEFAULT_VIDEOS["train"] * SPRITE_DEFAULT_FRAMES
    assert data.images.shape == (n, 64, 64, 3) and data.name == "synthetic-sprites:train"
    with pytest.raises(DataError, match="synthetic-sprites"):
        load_data("synthetic-sprites:val")
    with pytest.raises(DataError, match="synthetic-sprites"):
        sprite_videos("train", n_videos=0)
    with pytest.raises(DataError, match="synthetic-sprites"):
        sprite_videos("train", n_videos=2, frames=1)
    with pytest.raises(DataError, match="synthetic-sprites"):
        sprite_videos("test", n_videos=2, size=8)
