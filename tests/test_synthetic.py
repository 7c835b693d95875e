"""Generated data with exact geometry: synthetic faces, the articulated arm, and the face
landmark benchmark loaders (fixture-tested on tiny fake layouts)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from labelfree.data import available_datasets, load_data
from labelfree.data.imageset import DataError
from labelfree.data.landmark_sets import (
    MIRROR_PERM_68,
    aflw_mtfl,
    celeba_mafl,
    crop_with_landmarks,
    face300w,
)
from labelfree.data.synthetic import (
    _arm_colour,
    _arm_owner,
    _face_forward,
    _face_images_params,
    _face_inverse,
    arm_sequence,
    synthetic_faces,
)

# --------------------------------------------------------------------------- faces


def test_faces_meta_shapes_and_determinism():
    a = synthetic_faces("train", n=24, size=48, seed=3)
    b = synthetic_faces("train", n=24, size=48, seed=3)
    c = synthetic_faces("train", n=24, size=48, seed=4)
    assert a.images.shape == (24, 48, 48, 3) and a.images.dtype == np.uint8
    assert a.labels is None
    lm = a.meta["landmarks"]
    assert lm.shape == (24, 5, 2) and lm.dtype == np.float32
    names = a.meta["landmark_names"]
    assert names[:5] == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    assert [names[i] for i in a.meta["iod"]] == ["left_eye", "right_eye"]
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(lm, b.meta["landmarks"])
    assert not np.array_equal(a.images, c.images)
    # every landmark inside the image, image-left eye left of the image-right one
    assert lm.min() >= 0 and lm.max() <= 47
    assert np.all(lm[:, 0, 0] < lm[:, 1, 0]) and np.all(lm[:, 3, 0] < lm[:, 4, 0])
    # a modification of a returned set does not leak into the next call (cache copies)
    a.images[:] = 0
    np.testing.assert_array_equal(synthetic_faces("train", n=24, size=48, seed=3).images, b.images)


def test_faces_train_test_identities_disjoint_and_varied():
    tr = synthetic_faces("train", n=40, size=32)
    te = synthetic_faces("test", n=40, size=32)
    assert set(tr.meta["identity"]).isdisjoint(te.meta["identity"])
    ids = tr.meta["identity"]
    assert 1 < len(np.unique(ids)) < len(ids)  # several images per identity
    # pose varies within an identity: landmarks of the same identity differ
    same = np.flatnonzero(ids == ids[0])
    assert np.abs(np.diff(tr.meta["landmarks"][same], axis=0)).max() > 0.5


def test_face_forward_and_inverse_agree():
    rng = np.random.default_rng(0)
    p = _face_images_params(6, 64, rng)
    cx = rng.uniform(-0.8, 0.8, (6, 50))
    cy = rng.uniform(-1.0, 1.0, (6, 50))
    px, py = _face_forward(cx, cy, p, 64)
    bx, by, ok = _face_inverse(px, py, p, 64)
    assert ok.all()
    np.testing.assert_allclose(bx, cx, atol=1e-9)
    np.testing.assert_allclose(by, cy, atol=1e-9)


def test_face_eye_landmarks_land_on_the_pupils():
    # at 256 px a pupil is a few pixels wide: the pixel nearest each eye landmark is near black
    d = synthetic_faces("test", n=12, size=256, seed=1)
    lm = d.meta["landmarks"]
    for i in range(len(d)):
        for k in d.meta["iod"]:
            x, y = np.rint(lm[i, k]).astype(int)
            assert d.images[i, y, x].max() < 40, (i, k, d.images[i, y, x])
        # and the skin/iris/white around the eye is brighter than the pupil somewhere nearby
        x, y = np.rint(lm[i, 0]).astype(int)
        assert d.images[i, y - 12 : y + 13, x - 12 : x + 13].max() > 100


def test_faces_mirror_perm_maps_flipped_landmarks_consistently():
    d = synthetic_faces("train", n=16, size=64)
    perm = d.meta["mirror_perm"]
    assert sorted(perm) == list(range(5)) and [perm[p] for p in perm] == list(range(5))
    lm = d.meta["landmarks"]
    flipped = lm[:, perm].copy()
    flipped[..., 0] = 63 - flipped[..., 0]
    # after a flip the permuted "left" eye is again image-left, mouth corners too
    assert np.all(flipped[:, 0, 0] < flipped[:, 1, 0])
    assert np.all(flipped[:, 3, 0] < flipped[:, 4, 0])


def test_registry_names_synthetic_sets():
    d = load_data("synthetic-faces:test", image_size=32)
    assert len(d) == 1000 and d.images.shape[1:] == (32, 32, 3)
    assert d.meta["landmarks"].max() <= 31
    with pytest.raises(DataError, match="split"):
        load_data("synthetic-arm")
    with pytest.raises(DataError, match="unknown split"):
        load_data("synthetic-faces:all")


# --------------------------------------------------------------------------- arm


@pytest.fixture(scope="module")
def arm():
    return arm_sequence("train", n_videos=2, frames=12, size=64, seed=5)


def test_arm_meta(arm):
    n = 24
    assert arm.images.shape == (n, 64, 64, 3)
    assert arm.meta["flow"].shape == (n, 64, 64, 2) and arm.meta["flow"].dtype == np.float32
    assert arm.meta["mask"].shape == (n, 64, 64)
    np.testing.assert_array_equal(arm.meta["video"], np.repeat([0, 1], 12))
    np.testing.assert_array_equal(arm.meta["frame"], np.tile(np.arange(12), 2))
    flow, mask = arm.meta["flow"], arm.meta["mask"]
    valid = np.isfinite(flow[..., 0])
    assert not valid[arm.meta["frame"] == 11].any()  # last frame: no next frame
    assert not (valid & ~mask).any()  # background never has flow
    assert valid.sum() > 0.8 * mask[arm.meta["frame"] < 11].sum()  # most foreground does
    speed = np.linalg.norm(flow[valid], axis=1)
    assert 0.1 < speed.mean() < 6.0  # smooth motion: a few pixels per frame
    # the foreground mask is exactly where the arm's analytic owner says
    g = np.arange(64.0)
    py, px = np.meshgrid(g, g, indexing="ij")
    joints = arm.meta["keypoints"][3, :4].astype(np.float64)
    owner = _arm_owner(px, py, joints, arm.meta["angles"][3].astype(np.float64), 64)
    np.testing.assert_array_equal(owner >= 0, mask[3])
    other = arm_sequence("test", n_videos=2, frames=12, size=64, seed=5)
    assert not np.array_equal(other.meta["angles"], arm.meta["angles"])


def test_arm_flow_moves_pixels_onto_the_same_colour(arm):
    flow = arm.meta["flow"]
    kp, ang = arm.meta["keypoints"].astype(np.float64), arm.meta["angles"].astype(np.float64)
    g = np.arange(64.0)
    py, px = np.meshgrid(g, g, indexing="ij")
    checked = 0
    for i in range(len(arm) - 1):
        if arm.meta["video"][i] != arm.meta["video"][i + 1]:
            continue
        ok = np.isfinite(flow[i, ..., 0])
        tx, ty = px[ok] + flow[i, ..., 0][ok], py[ok] + flow[i, ..., 1][ok]
        # the colour of the material point at its flowed position in the next pose
        col = _arm_colour(tx, ty, kp[i + 1, :4], ang[i + 1], 64)
        assert np.isfinite(col).all()  # the target is on the arm
        rendered = arm.images[i][ok].astype(np.float64) / 255.0
        bad = np.abs(col - rendered).max(axis=1) > 1.0 / 255.0
        assert bad.mean() < 1e-3
        checked += ok.sum()
    assert checked > 1000


def _bilinear(field: np.ndarray, x: float, y: float) -> np.ndarray:
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    return (
        field[y0, x0] * (1 - fx) * (1 - fy)
        + field[y0, x0 + 1] * fx * (1 - fy)
        + field[y0 + 1, x0] * (1 - fx) * fy
        + field[y0 + 1, x0 + 1] * fx * fy
    )


def test_arm_flow_transports_segment_centres_exactly(arm):
    flow, kp = arm.meta["flow"], arm.meta["keypoints"].astype(np.float64)
    ang = arm.meta["angles"].astype(np.float64)
    done = 0
    for i in range(len(arm) - 1):
        if arm.meta["video"][i] != arm.meta["video"][i + 1]:
            continue
        for k in range(3):
            x, y = kp[i, 4 + k]
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            if not (0 <= x0 < 63 and 0 <= y0 < 63):
                continue
            nx = np.array([x0, x0 + 1, x0, x0 + 1], float)
            ny = np.array([y0, y0, y0 + 1, y0 + 1], float)
            if not (_arm_owner(nx, ny, kp[i, :4], ang[i], 64) == k).all():
                continue  # a corner pixel belongs to another segment: flow not affine there
            if not np.isfinite(flow[i, y0 : y0 + 2, x0 : x0 + 2]).all():
                continue
            moved = np.array([x, y]) + _bilinear(flow[i], x, y)
            np.testing.assert_allclose(moved, kp[i + 1, 4 + k], atol=1e-3)
            done += 1
    assert done >= 20


# --------------------------------------------------------------------------- landmark sets


def test_crop_with_landmarks_maps_pixel_centres():
    img = np.zeros((40, 50, 3), np.uint8)
    img[12, 30] = 255
    # no scaling: a pure shift
    out, lm = crop_with_landmarks(img, np.array([[30.0, 12.0]]), (20, 5, 20), 20)
    np.testing.assert_allclose(lm, [[10.0, 7.0]])
    assert out[7, 10].max() == 255 and out.sum() == 255 * 3
    # upsampling by 2: pixel (30, 12) is crop pixel (10, 7), which becomes output pixels
    # 20..21 x 14..15, centred on (20.5, 14.5)
    out, lm = crop_with_landmarks(img, np.array([[30.0, 12.0]]), (20, 5, 20), 40)
    np.testing.assert_allclose(lm, [[20.5, 14.5]])
    grey = out.astype(float).mean(axis=2)
    assert grey[14:16, 20:22].min() > 100 and grey[14:16, 20:22].sum() >= 0.5 * grey.sum()
    # a crop past the border is black there
    out, _ = crop_with_landmarks(img, np.zeros((1, 2)), (-10, -10, 20), 20)
    assert out[:10, :10].max() == 0


def _dot_image(h: int, w: int, points: np.ndarray) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    for x, y in np.rint(points).astype(int):
        img[y - 2 : y + 3, x - 2 : x + 3] = 250
    return img


def _assert_dots_at_landmarks(data) -> None:
    for img, lm in zip(data.images, data.meta["landmarks"], strict=True):
        grey = img.astype(float).mean(axis=2)
        for x, y in lm:
            xi, yi = int(round(x)), int(round(y))
            assert grey[yi, xi] > 100, (x, y)


def test_celeba_mafl_layout(tmp_path, monkeypatch):
    root = tmp_path / "celeba"
    root.mkdir()
    (root / "img_align_celeba").mkdir()
    (root / "MAFL").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k in range(1, 6):
        lm = np.array([[69, 111], [108, 112], [88, 134], [72, 152], [106, 153]], float)
        lm += rng.integers(-4, 5, lm.shape)
        Image.fromarray(_dot_image(218, 178, lm)).save(root / f"img_align_celeba/{k:06d}.png")
        rows.append(f"{k:06d}.png " + " ".join(str(int(v)) for v in lm.ravel()))
    (root / "list_landmarks_align_celeba.txt").write_text(
        "5\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
        "rightmouth_x rightmouth_y\n" + "\n".join(rows) + "\n"
    )
    (root / "MAFL/training.txt").write_text("000001.png\n000002.png\n000003.png\n")
    (root / "MAFL/testing.txt").write_text("000004.png\n")
    (root / "list_eval_partition.txt").write_text(
        "000001.png 0\n000002.png 0\n000003.png 1\n000004.png 0\n000005.png 0\n"
    )
    # through the registry: the data root may be a parent holding the standard folder name
    monkeypatch.setenv("LABELFREE_DATA_ROOT", str(tmp_path))
    assert len(load_data("celeba-mafl:test", image_size=32)) == 1
    assert "celeba-mafl:test" in available_datasets()
    monkeypatch.delenv("LABELFREE_DATA_ROOT")
    with pytest.raises(DataError, match="no data root"):
        load_data("celeba-mafl:test")
    tr = celeba_mafl(root, "train", image_size=64)
    te = celeba_mafl(root, "test", image_size=64)
    cel = celeba_mafl(root, "celeba", image_size=64)
    assert len(tr) == 3 and len(te) == 1
    assert [p.rsplit("/", 1)[-1] for p in cel.paths] == ["000001.png", "000002.png", "000005.png"]
    assert tr.meta["iod"] == (0, 1) and tr.meta["landmarks"].shape == (3, 5, 2)
    # landmark 0 of image 1 in crop coordinates: (x + 0.5 - 19) * 64 / 140 - 0.5
    raw = np.array(rows[0].split()[1:], float).reshape(5, 2)
    np.testing.assert_allclose(
        tr.meta["landmarks"][0], (raw + 0.5 - np.array([19, 55])) * 64 / 140 - 0.5, atol=1e-4
    )
    _assert_dots_at_landmarks(tr)
    with pytest.raises(DataError, match="MAFL/testing.txt"):
        (root / "MAFL/testing.txt").unlink()
        celeba_mafl(root, "train")


def test_aflw_mtfl_layout(tmp_path):
    (tmp_path / "AFLW").mkdir()
    lines = []
    for k in range(3):
        lm = np.array([[40, 50], [70, 52], [55, 66], [44, 82], [68, 83]], float) + k
        Image.fromarray(_dot_image(130, 120, lm)).save(tmp_path / f"AFLW/{k}.jpg", quality=98)
        coords = " ".join(f"{v:.1f}" for v in list(lm[:, 0]) + list(lm[:, 1]))
        lines.append(f"AFLW\\{k}.jpg {coords} 1 2 2 3")
    (tmp_path / "testing.txt").write_text("\n".join(lines) + "\n")
    d = aflw_mtfl(tmp_path, "test", image_size=48)
    assert len(d) == 3 and d.meta["landmarks"].shape == (3, 5, 2)
    _assert_dots_at_landmarks(d)
    lm = d.meta["landmarks"][0]
    # the crop is centred on the landmarks' bounding box and 2.2x its larger side
    assert abs((lm[:, 0].min() + lm[:, 0].max()) / 2 - 23.5) < 1.0
    iod = np.linalg.norm(lm[0] - lm[1])
    assert abs(iod - 30.07 / (2.2 * 33) * 48) < 0.5
    with pytest.raises(DataError, match="training.txt"):
        aflw_mtfl(tmp_path, "train")
    with pytest.raises(DataError, match="not a folder"):
        aflw_mtfl(tmp_path / "nope", "test")


def test_300w_layout(tmp_path):
    rng = np.random.default_rng(1)
    made = {}
    for part in ["afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug"]:
        (tmp_path / part).mkdir(parents=True)
        lm = np.stack([rng.uniform(30, 90, 68), rng.uniform(30, 90, 68)], 1)
        lm[36], lm[45] = [35, 50], [85, 50]
        img = _dot_image(120, 120, lm[[36, 45, 30]])
        Image.fromarray(img).save(tmp_path / part / "img.png")
        pts = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in lm)  # 1-based on disk
        (tmp_path / part / "img.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}\n}}\n")
        made[part] = lm
    tr = face300w(tmp_path, "train", image_size=64)
    assert len(tr) == 3 and tr.meta["landmarks"].shape == (3, 68, 2)
    assert tr.meta["iod"] == (36, 45)
    assert len(face300w(tmp_path, "test")) == 3
    assert len(face300w(tmp_path, "challenging")) == 1
    # 1-based .pts: a point read as p - 1; the crop keeps relative geometry (uniform scale)
    lm = tr.meta["landmarks"][0]
    raw = made["afw"]
    scale = np.linalg.norm(lm[45] - lm[36]) / np.linalg.norm(raw[45] - raw[36])
    np.testing.assert_allclose(lm - lm[36], (raw - raw[36]) * scale, atol=1e-3)
    for img, pts in zip(tr.images, tr.meta["landmarks"], strict=True):
        grey = img.astype(float).mean(axis=2)
        for k in (36, 45):
            assert grey[int(round(pts[k, 1])), int(round(pts[k, 0]))] > 100
    perm = MIRROR_PERM_68
    assert [perm[p] for p in perm] == list(range(68))
    assert perm[36] == 45 and perm[30] == 30 and perm[0] == 16 and perm[48] == 54
    (tmp_path / "ibug" / "img.pts").unlink()
    (tmp_path / "ibug" / "img.png").unlink()
    (tmp_path / "ibug").rmdir()
    with pytest.raises(DataError, match="ibug"):
        face300w(tmp_path, "test")
