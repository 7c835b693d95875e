"""Frame sequences: the synthetic posture set and local temporal pooling (seed 001 Eq. 3.9)."""

from __future__ import annotations

import numpy as np
import pytest

from labelfree.data.imageset import DataError, ImageSet
from labelfree.data.registry import available_datasets, load_data
from labelfree.data.sequences import (
    JOINT_NAMES,
    check_sequences,
    mirror_images,
    mirror_keypoints,
    pose_keypoints,
    synthetic_poses,
)
from labelfree.structure.temporal import (
    ltp_pair_similarity,
    ltp_similarity_matrix,
    ltp_stack,
    temporal_neighbors,
)


def _ltp_by_formula(emb, video, frame, i, j, p, boundary):
    """Eq. 3.9 written out term by term, with the boundary rule applied frame by frame."""

    def frame_of(item, n):
        same = np.flatnonzero(video == video[item])
        want = frame[item] + n
        hit = same[frame[same] == want]
        if len(hit):
            return hit[0]
        if boundary == "zero":
            return None
        # nearest existing frame, the earlier one on a tie
        d = np.abs(frame[same] - want)
        cands = same[d == d.min()]
        return cands[np.argmin(frame[cands])]

    total = 0.0
    for n in range(-p, p + 1):
        a, b = frame_of(i, n), frame_of(j, n)
        if a is not None and b is not None:
            total += float(emb[a] @ emb[b])
    return total / (2 * p + 1)


def test_ltp_hand_example():
    # video 0: frames 0..2, video 1: frames 0..2; 2-D embeddings, p = 1, raw inner products.
    emb = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    video = np.array([0, 0, 0, 1, 1, 1])
    frame = np.array([0, 1, 2, 0, 1, 2])
    kw = dict(video=video, frame=frame, p=1, normalize=False)
    # interior pair (1, 4): (e0·e3 + e1·e4 + e2·e5) / 3 = (1 + 0 + 0) / 3
    assert ltp_pair_similarity(emb, [1], [4], **kw)[0] == pytest.approx(1 / 3)
    # boundary pair (0, 3): clamp repeats frame 0: (e0·e3 + e0·e3 + e1·e4) / 3 = 2/3
    assert ltp_pair_similarity(emb, [0], [3], **kw)[0] == pytest.approx(2 / 3)
    # ... zero drops the missing offset but keeps the denominator: (e0·e3 + e1·e4) / 3 = 1/3
    assert ltp_pair_similarity(emb, [0], [3], boundary="zero", **kw)[0] == pytest.approx(1 / 3)
    # p = 0 is the plain similarity
    assert ltp_pair_similarity(emb, [1], [5], video=video, frame=frame, p=0)[0] == 1.0


@pytest.mark.parametrize("boundary", ["clamp", "zero"])
def test_ltp_equals_formula_with_gaps_and_shuffled_order(boundary):
    rng = np.random.default_rng(0)
    video = np.repeat([3, 7, 9], [5, 6, 4])
    frame = np.concatenate([[0, 1, 2, 3, 4], [2, 3, 5, 6, 7, 10], [1, 2, 3, 4]])  # gaps
    perm = rng.permutation(len(video))
    video, frame = video[perm], frame[perm]
    emb = rng.normal(size=(len(video), 4)).astype(np.float32)
    i, j = np.meshgrid(np.arange(len(video)), np.arange(len(video)), indexing="ij")
    got = ltp_pair_similarity(
        emb, i, j, video, frame, p=2, boundary=boundary, normalize=False
    ).reshape(i.shape)
    want = np.array(
        [
            [_ltp_by_formula(emb, video, frame, a, b, 2, boundary) for b in range(len(video))]
            for a in range(len(video))
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the stacked form is the same inner product, and the matrix helper agrees
    phi = ltp_stack(emb, video, frame, p=2, boundary=boundary, normalize=False)
    np.testing.assert_allclose(phi @ phi.T, want, rtol=1e-5, atol=1e-6)
    mat = ltp_similarity_matrix(
        emb, video, frame, rows=[4, 0], p=2, boundary=boundary, normalize=False
    )
    np.testing.assert_allclose(mat, want[[4, 0]], rtol=1e-5, atol=1e-6)


def test_ltp_clamp_stack_has_unit_norm_and_default_p():
    rng = np.random.default_rng(1)
    video = np.repeat([0, 1], 10)
    frame = np.tile(np.arange(10), 2)
    phi = ltp_stack(rng.normal(size=(20, 3)), video, frame)  # p = 3, clamp, normalised
    assert phi.shape == (20, 7 * 3)
    np.testing.assert_allclose(np.linalg.norm(phi, axis=1), 1.0, rtol=1e-5)
    zero = ltp_stack(rng.normal(size=(20, 3)), video, frame, boundary="zero")
    # frame 0 lacks 3 of its 7 window frames
    assert np.linalg.norm(zero[0]) ** 2 == pytest.approx(4 / 7, rel=1e-5)


def test_temporal_neighbors_table_and_errors():
    video = np.array([1, 1, 1, 1])
    frame = np.array([0, 1, 3, 4])
    np.testing.assert_array_equal(
        temporal_neighbors(video, frame, p=1, boundary="clamp"),
        [[0, 0, 1], [0, 1, 1], [1, 2, 3], [2, 3, 3]],  # frame 2 missing: tie -> earlier
    )
    np.testing.assert_array_equal(
        temporal_neighbors(video, frame, p=1, boundary="zero"),
        [[-1, 0, 1], [0, 1, -1], [-1, 2, 3], [2, 3, -1]],
    )
    with pytest.raises(DataError, match="twice"):
        temporal_neighbors(np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(DataError, match="boundary"):
        temporal_neighbors(video, frame, boundary="wrap")


def test_pose_keypoints_by_hand():
    kp = pose_keypoints(np.zeros(9))
    assert kp.shape == (len(JOINT_NAMES), 2)
    # upright, limbs hanging straight down: hip origin, neck 1 up (y down in images)
    want = {
        "hip": (0, 0),
        "neck": (0, -1),
        "head": (0, -1.35),
        "hand_l": (0, -1 + 0.55 + 0.5),
        "knee_r": (0, 0.65),
        "foot_r": (0, 1.25),
    }
    for name, xy in want.items():
        np.testing.assert_allclose(kp[JOINT_NAMES.index(name)], xy, atol=1e-6)
    # torso leaning 90° towards +x, facing left mirrors it to -x
    lean = np.zeros(9)
    lean[0] = np.pi / 2
    np.testing.assert_allclose(pose_keypoints(lean)[1], (1, 0), atol=1e-6)
    np.testing.assert_allclose(pose_keypoints(lean, -1)[1], (-1, 0), atol=1e-6)
    np.testing.assert_allclose(mirror_keypoints(pose_keypoints(lean)), pose_keypoints(lean, -1))


def test_synthetic_poses_deterministic_and_disjoint():
    a = synthetic_poses("test", image_size=24)
    b = synthetic_poses("test", image_size=24)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(synthetic_poses("test", image_size=24, seed=1).images, a.images)
    tr = synthetic_poses("train", image_size=24)
    assert a.images.shape[1:] == (24, 24, 3) and len(a) == 24 * 48
    video, frame = check_sequences(a)
    assert len(np.unique(video)) == 24 and frame.max() == 47
    kp = a.meta["keypoints"]
    assert kp.shape == (len(a), 11, 2) and a.meta["angles"].shape == (len(a), 9)
    # the stored keypoints are those of the stored angles and facing
    np.testing.assert_allclose(kp, pose_keypoints(a.meta["angles"], a.meta["facing"]), atol=1e-5)
    # disjoint videos: no train trajectory equals a test trajectory
    assert not np.isin(a.meta["angles"][:, 0], tr.meta["angles"][:, 0]).any()
    # motion is smooth: consecutive frames are closer in pose than random pairs
    same = video[1:] == video[:-1]
    step = np.abs(np.diff(a.meta["angles"], axis=0))[same].mean()
    rnd = np.abs(a.meta["angles"][::7][1:] - a.meta["angles"][::7][:-1]).mean()
    assert step < rnd / 3
    # the figure is drawn: frames of a video differ where the limbs move
    assert np.abs(a.images[1].astype(int) - a.images[10].astype(int)).max() > 60


def test_registry_split_subset_and_mirror():
    assert {"synthetic-poses:train", "synthetic-poses:test"} <= set(available_datasets())
    data = load_data("synthetic-poses:train", image_size=20)
    assert data.name == "synthetic-poses:train" and data.images.shape[1] == 20
    sub = data.per_class(5, seed=0)
    check_sequences(sub)
    picked = data.subset([3, 50, 700])
    np.testing.assert_array_equal(picked.meta["video"], data.meta["video"][[3, 50, 700]])
    np.testing.assert_array_equal(picked.meta["keypoints"], data.meta["keypoints"][[3, 50, 700]])
    m = mirror_images(picked)
    np.testing.assert_array_equal(m.images, picked.images[:, :, ::-1])
    with pytest.raises(DataError, match="frame-sequence"):
        check_sequences(ImageSet(images=np.zeros((2, 4, 4, 3), np.uint8)))
    with pytest.raises(DataError, match="split"):
        synthetic_poses("val")


def test_load_olympic_sports_layout(tmp_path):
    from PIL import Image

    from labelfree.data.sequences import load_olympic_sports
    from labelfree.evaluate.exemplar import exemplar_protocol

    rng = np.random.default_rng(0)
    for sport, videos in (("long_jump", ("a", "b")), ("vault", ("c",))):
        for v in videos:
            d = tmp_path / "frames" / sport / v
            d.mkdir(parents=True)
            for f in (3, 1, 2, 10):  # written out of order; 10 sorts after 3 numerically
                img = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"frame{f:d}.png")
    (tmp_path / "exemplars").mkdir()
    (tmp_path / "exemplars" / "long_jump.csv").write_text(
        "query,label,frame,flip\n"
        "long_jump/a/frame1.png,pos,long_jump/b/frame2.png,0\n"
        "long_jump/a/frame1.png,neg,long_jump/b/frame10.png,1\n"
        "long_jump/a/frame1.png,pos,long_jump/a/frame3.png,1\n"
        "long_jump/b/frame3.png,pos,long_jump/a/frame2.png,0\n"  # no negative: dropped
    )
    data = load_olympic_sports(tmp_path, image_size=8, progress=False)
    assert data.images.shape == (12, 8, 8, 3) and data.class_names == ["long_jump", "vault"]
    np.testing.assert_array_equal(data.meta["video"], np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(data.meta["frame"], np.tile([1, 2, 3, 10], 3))
    np.testing.assert_array_equal(data.labels, [0] * 8 + [1] * 4)
    assert data.paths[3].endswith("a/frame10.png")
    ex = data.meta["exemplars"]
    assert ex.queries.tolist() == [0]  # long_jump/a/frame1
    assert ex.positives[0].tolist() == [5, 2] and ex.negatives[0].tolist() == [7]
    assert ex.pos_flip[0].tolist() == [False, True] and ex.neg_flip[0].tolist() == [True]
    emb = rng.normal(size=(12, 4))
    res = exemplar_protocol(emb, data, -emb)
    assert res["n_queries"] == 1.0
    (tmp_path / "exemplars" / "vault.csv").write_text(
        "query,label,frame,flip\nvault/c/x.png,pos,vault/c/frame1.png,0\n"
    )
    with pytest.raises(DataError, match="not a"):
        load_olympic_sports(tmp_path, image_size=8, progress=False)
    with pytest.raises(DataError, match="frames/"):
        load_olympic_sports(tmp_path / "nowhere")
