"""The exemplar ROC-AUC protocol (Olympic Sports, seed 001 §3.3.1) and exemplar generation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.interpolate
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.metrics.pairwise import cosine_similarity

from labelfree.data.imageset import DataError
from labelfree.evaluate.exemplar import (
    FPR_GRID,
    evaluate_exemplars,
    exemplar_roc_auc,
    interpolate_roc,
    make_exemplars,
    pose_distance,
)


def test_single_query_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = 40
        sim = np.round(rng.normal(size=(1, n)), 1)  # rounding makes ties
        items = rng.permutation(n)[:25]
        pos, neg = items[:8], items[8:]
        res = exemplar_roc_auc(sim, [0], [pos], [neg], similarity=True)
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        want = roc_auc_score(y, sim[0, np.r_[pos, neg]])
        assert res["per_query_auc"][0] == pytest.approx(want, abs=1e-12)
        assert res["mean_auc"] == pytest.approx(want, abs=1e-12)
        # 101-point curve: within 1/200 of the exact area (see the module docstring)
        assert abs(res["roc_auc"] - want) <= 0.005 + 1e-12, trial


def test_single_query_from_embeddings_matches_sklearn_cosine():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 5))
    q, pos, neg = 4, np.array([1, 7, 9, 20]), np.array([0, 2, 3, 11, 12, 13, 29])
    res = exemplar_roc_auc(emb, [q], [pos], [neg])
    cos = cosine_similarity(emb[[q]], emb)[0]
    want = roc_auc_score(np.r_[np.ones(4), np.zeros(7)], cos[np.r_[pos, neg]])
    assert res["per_query_auc"][0] == pytest.approx(want, abs=1e-9)


def test_hand_computed_curve_area():
    # ranking P N P N: vertices (0,0) (0,.5) (.5,.5) (.5,1) (1,1), exact AUC 0.75.
    sim = np.array([[0.9, 0.8, 0.7, 0.6]])
    res = exemplar_roc_auc(sim, [0], [[0, 2]], [[1, 3]], similarity=True)
    assert res["per_query_auc"][0] == pytest.approx(0.75)
    # interpolated: 0.5 on [0, 0.5), 1 from 0.5 on; the jump at 0.5 costs a trapezoid of
    # width 0.01: 0.49·0.5 + 0.01·(0.5+1)/2 + 0.5·1 = 0.7525
    assert res["roc_auc"] == pytest.approx(0.7525)
    assert res["tpr"][0] == 0.5 and res["tpr"][50] == 1.0 and len(res["fpr"]) == 101
    perfect = exemplar_roc_auc(sim, [0], [[0, 1]], [[2, 3]], similarity=True)
    assert perfect["roc_auc"] == pytest.approx(1.0)
    worst = exemplar_roc_auc(sim, [0], [[2, 3]], [[0, 1]], similarity=True)
    assert worst["roc_auc"] == pytest.approx(0.005) and worst["per_query_auc"][0] == 0.0


def test_roc_vertices_match_sklearn_roc_curve():
    from labelfree.evaluate.exemplar import _roc

    rng = np.random.default_rng(5)
    for _ in range(30):
        y = rng.random(25) < 0.3
        y[:2] = [True, False]
        scores = rng.integers(0, 6, 25).astype(float)
        fpr, tpr, auc = _roc(scores, y)
        want_fpr, want_tpr, _ = roc_curve(y, scores, drop_intermediate=False)
        np.testing.assert_allclose(fpr, want_fpr)
        np.testing.assert_allclose(tpr, want_tpr)
        assert auc == pytest.approx(roc_auc_score(y, scores))


def test_interpolation_agrees_with_scipy_interp1d():
    # the authors' script interpolates sklearn's roc_curve with scipy's interp1d
    rng = np.random.default_rng(2)
    for k in range(50):
        y = rng.random(30) < 0.4
        y[:2] = [True, False]
        fpr, tpr, _ = roc_curve(y, rng.integers(0, 8, 30), drop_intermediate=bool(k % 2))
        want = scipy.interpolate.interp1d(fpr, tpr, kind="linear")(FPR_GRID)
        np.testing.assert_allclose(interpolate_roc(fpr, tpr), want, atol=1e-12)


def test_mean_curve_area_is_mean_of_query_areas():
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(3, 50))
    pos = [rng.choice(50, 5, replace=False) for _ in range(3)]
    neg = [np.setdiff1d(rng.choice(50, 20, replace=False), p)[:12] for p in pos]
    joint = exemplar_roc_auc(sim, [0, 1, 2], pos, neg, similarity=True)
    singles = [
        exemplar_roc_auc(sim[[q]], [q], [pos[q]], [neg[q]], similarity=True)["roc_auc"]
        for q in range(3)
    ]
    assert joint["roc_auc"] == pytest.approx(np.mean(singles))


def test_mirror_best_and_annotated():
    # item 0 is the query. Its image embedding ranks the negatives first; its mirror ranks
    # the positives first.
    emb = np.array([[1, 0], [-1, 0.1], [-1, 0.2], [1, 1], [1, 2]], dtype=np.float32)
    mirror = emb.copy()
    mirror[0] = [-1, 0]
    pos, neg = [np.array([1, 2])], [np.array([3, 4])]
    plain = exemplar_roc_auc(emb, [0], pos, neg)
    assert plain["per_query_auc"][0] == 0.0
    best = exemplar_roc_auc(emb, [0], pos, neg, mirror)  # default mode "best"
    assert best["per_query_auc"][0] == 1.0 and best["mirror_used"].tolist() == [True]
    # annotated: positives flagged as matching the mirrored query, negatives not
    flips = [np.array([True, True, False, False])]
    ann = exemplar_roc_auc(emb, [0], pos, neg, mirror, mode="annotated", flips=flips)
    assert ann["per_query_auc"][0] == 1.0
    # flags the other way round score negatives with the mirror: still all wrong
    flips_bad = [np.array([False, False, True, True])]
    bad = exemplar_roc_auc(emb, [0], pos, neg, mirror, mode="annotated", flips=flips_bad)
    assert bad["per_query_auc"][0] == 0.0
    with pytest.raises(DataError, match="flip"):
        exemplar_roc_auc(emb, [0], pos, neg, mirror, mode="annotated")
    with pytest.raises(DataError, match="mirror"):
        exemplar_roc_auc(emb, [0], pos, neg, mode="best")


def _toy_poses():
    """Three videos of a 2-joint 'pose' moving on a line; video 2 is video 0 mirrored."""
    t = np.linspace(0, 1, 20)
    kp0 = np.stack([np.stack([t, 0 * t], 1), np.stack([t + 1, 0 * t + 1], 1)], 1)
    kp1 = kp0 + np.array([0.0, 0.05])
    kp2 = kp0.copy()
    kp2[..., 0] *= -1
    kp = np.concatenate([kp0, kp1, kp2]).astype(np.float32)
    video = np.repeat([0, 1, 2], 20)
    frame = np.tile(np.arange(20), 3)
    return kp, video, frame


def test_make_exemplars_thresholds_videos_and_flips():
    kp, video, frame = _toy_poses()
    ex = make_exemplars(kp, video, frame, n_queries=15, pos_max=0.12, neg_min=0.4, seed=0)
    assert 0 < len(ex) <= 15
    m = kp.copy()
    m[..., 0] *= -1
    for q, p, n, pf, nf in zip(
        ex.queries, ex.positives, ex.negatives, ex.pos_flip, ex.neg_flip, strict=True
    ):
        d = np.minimum(pose_distance(kp, kp[q][None]), pose_distance(m, kp[q][None]))
        assert (d[p] <= 0.12).all() and (d[n] >= 0.4).all()
        assert not np.isin(video[np.r_[p, n]], video[q]).any()  # own video never labelled
        # frames of the mirrored video match only through the mirror (and vice versa)
        mirrored_pair = (video[p] == 2) != (video[q] == 2)
        np.testing.assert_array_equal(pf, mirrored_pair)
        assert len(nf) == len(n)
    again = make_exemplars(kp, video, frame, n_queries=15, pos_max=0.12, neg_min=0.4, seed=0)
    np.testing.assert_array_equal(again.queries, ex.queries)
    # without mirror invariance the mirrored video only yields negatives
    plain = make_exemplars(kp, video, frame, pos_max=0.12, neg_min=0.4, mirror_invariant=False)
    for q, p in zip(plain.queries, plain.positives, strict=True):
        assert not ((video[p] == 2) != (video[q] == 2)).any()
    with pytest.raises(DataError, match="below"):
        make_exemplars(kp, video, frame, pos_max=0.5, neg_min=0.4)


def test_make_exemplars_prefers_in_class_negatives_and_perfect_embedding_scores_one():
    kp, video, frame = _toy_poses()
    labels = np.array([0] * 20 + [1] * 40)
    ex = make_exemplars(kp, video, frame, n_neg=4, pos_max=0.12, neg_min=0.4, labels=labels)
    for q, n in zip(ex.queries, ex.negatives, strict=True):
        in_class = labels[n] == labels[q]
        # in-class negatives come first in the draw, so a class with enough of them fills all 4
        if labels[q] == 1:
            assert in_class.all()
    # the ground-truth pose distance as similarity, mirror-aware, scores exactly 1
    m = kp.copy()
    m[..., 0] *= -1
    sim = -pose_distance(kp[ex.queries][:, None], kp[None])
    sim_m = -pose_distance(m[ex.queries][:, None], kp[None])
    flips = [np.r_[a, b] for a, b in zip(ex.pos_flip, ex.neg_flip, strict=True)]
    res = exemplar_roc_auc(
        sim,
        ex.queries,
        ex.positives,
        ex.negatives,
        sim_m,
        mode="annotated",
        flips=flips,
        similarity=True,
    )
    assert res["roc_auc"] == pytest.approx(1.0) and (res["per_query_auc"] == 1.0).all()


def test_evaluate_exemplars_summary():
    kp, video, frame = _toy_poses()
    ex = make_exemplars(kp, video, frame, pos_max=0.12, neg_min=0.4)
    emb = np.random.default_rng(4).normal(size=(len(kp), 6))
    full = exemplar_roc_auc(emb, ex.queries, ex.positives, ex.negatives, -emb)
    res = evaluate_exemplars(emb, ex, -emb)
    assert res["roc_auc"] == pytest.approx(full["roc_auc"])
    assert res["mirror_rate"] == pytest.approx(np.mean(full["mirror_used"]))
    assert res["n_queries"] == len(ex)


def test_exemplar_protocol_on_synthetic_poses_matches_parts():
    from labelfree.data.sequences import mirror_images, synthetic_poses
    from labelfree.evaluate.exemplar import exemplar_protocol
    from labelfree.structure.temporal import ltp_stack

    data = synthetic_poses("test", image_size=16)
    emb = data.images.reshape(len(data), -1).astype(np.float32)
    emb_m = mirror_images(data).images.reshape(len(data), -1).astype(np.float32)
    video, frame = data.meta["video"], data.meta["frame"]
    ex = make_exemplars(data.meta["keypoints"], video, frame, labels=data.labels, seed=5)
    assert len(ex) == 120
    res = exemplar_protocol(emb, data, emb_m, seed=5)
    assert res["roc_auc"] == pytest.approx(
        evaluate_exemplars(emb, ex, emb_m, "annotated")["roc_auc"]
    )
    assert res["roc_auc_best"] == pytest.approx(
        evaluate_exemplars(emb, ex, emb_m, "best")["roc_auc"]
    )
    pooled = exemplar_protocol(emb, data, emb_m, ltp=3, exemplars=ex)
    zl, zml = ltp_stack(emb, video, frame), ltp_stack(emb_m, video, frame)
    want = evaluate_exemplars(zl, ex, zml, "annotated")["roc_auc"]
    assert pooled["roc_auc"] == pytest.approx(want)
    assert exemplar_protocol(emb, data)["mirror_rate"] == 0.0
