"""Landmark regression, matching and flow probes (labelfree.evaluate.landmarks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from labelfree.data.synthetic import arm_sequence
from labelfree.evaluate.landmarks import (
    _to_rgb,
    draw_embedding_colours,
    draw_landmarks,
    fit_landmark_regressor,
    flow_matching_error,
    iod_error,
    landmark_probe,
    matching_error,
    mean_shape_error,
    predict_landmarks,
    sample_descriptors,
)


def _linear_problem(n: int, p: int = 6, l_: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(5, 60, (n, p, 2))
    w = rng.normal(0, 0.3, (2 * p, 2 * l_))
    lm = (pts.reshape(n, -1) @ w).reshape(n, l_, 2)
    return pts, lm, w


def test_regressor_recovers_an_exact_linear_relation():
    pts, lm, w = _linear_problem(200)
    w_hat = fit_landmark_regressor(pts[:150], lm[:150])
    np.testing.assert_allclose(w_hat, w, atol=1e-3)
    pred = predict_landmarks(w_hat, pts[150:])
    assert iod_error(pred, lm[150:], (0, 1)) < 0.05  # the default ridge costs ~0.01 % IOD
    exact = predict_landmarks(fit_landmark_regressor(pts[:150], lm[:150], ridge=0.0), pts[150:])
    assert iod_error(exact, lm[150:], (0, 1)) < 1e-8
    # the ridge is min ‖XW − Y‖² + λ‖W‖² with λ = ridge · mean(X²): the normal equations give the
    # same W; a stronger ridge shrinks the map and fits the training set worse (both strictly)
    x, y = pts[:150].reshape(150, -1), lm[:150].reshape(150, -1)
    fits = {}
    for ridge in (0.0, 1e-2, 1.0):
        lam = ridge * (x**2).mean()
        fits[ridge] = fit_landmark_regressor(pts[:150], lm[:150], ridge=ridge)
        normal = np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)
        np.testing.assert_allclose(fits[ridge], normal, rtol=1e-6, atol=1e-9)
    norms = [np.linalg.norm(fits[r]) for r in (0.0, 1e-2, 1.0)]
    residuals = [np.linalg.norm(x @ fits[r] - y) for r in (0.0, 1e-2, 1.0)]
    assert norms[0] > norms[1] > norms[2]
    assert residuals[0] < residuals[1] < residuals[2]
    # agrees with plain least squares when the ridge is off
    ref, *_ = np.linalg.lstsq(pts[:150].reshape(150, -1), lm[:150].reshape(150, -1), rcond=None)
    np.testing.assert_allclose(fit_landmark_regressor(pts[:150], lm[:150], ridge=0.0), ref)


def test_regressor_has_no_bias():
    # a pure offset of the landmarks cannot be represented from all-zero points
    pts = np.zeros((10, 3, 2))
    lm = np.full((10, 2, 2), 7.0)
    w = fit_landmark_regressor(pts, lm)
    np.testing.assert_allclose(predict_landmarks(w, pts), 0.0)


def test_iod_error_hand_computed():
    true = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]], [[0.0, 0.0], [0.0, 20.0], [1, 1]]])
    pred = true.copy()
    pred[0, 2] += [3.0, 4.0]  # 5 px off, IOD 10 -> 50 %
    pred[1, 0] += [0.0, 2.0]  # 2 px off, IOD 20 -> 10 %
    assert iod_error(pred, true, (0, 1)) == pytest.approx(100 * (0.5 + 0.1) / 6)
    assert iod_error(torch.from_numpy(pred), true, (0, 1)) == pytest.approx(10.0)


def test_mean_shape_error():
    tr = np.array([[[0.0, 0.0], [10.0, 0.0]], [[2.0, 0.0], [12.0, 0.0]]])  # mean (1,0),(11,0)
    te = np.array([[[1.0, 0.0], [11.0, 0.0]], [[1.0, 5.0], [11.0, 5.0]]])
    assert mean_shape_error(tr, te[:1], (0, 1)) == pytest.approx(0.0)
    assert mean_shape_error(tr, te, (0, 1)) == pytest.approx(25.0)  # 0 and 5/10 -> mean 25 %


def test_landmark_probe_few_shot_curve():
    pts, lm, _ = _linear_problem(300, p=4, l_=5, seed=2)
    noisy = lm + np.random.default_rng(0).normal(0, 0.5, lm.shape)
    res = landmark_probe(pts[:200], noisy[:200], pts[200:], lm[200:], (0, 1), seed=0)
    assert set(res) == {"all", "1", "5", "10", "20", "1_std", "5_std", "10_std", "20_std"}
    assert res["all"] < res["20"] < res["1"]
    assert res["1_std"] > 0
    # with exact targets and as many images as unknowns per output, the fit is exact
    exact = landmark_probe(
        pts[:200], lm[:200], pts[200:], lm[200:], (0, 1), shots=(10, None), ridge=0.0
    )
    assert exact["all"] < 1e-8 and exact["10"] < 1e-6
    # shot counts beyond the training set fall back to using every image once
    small = landmark_probe(pts[:8], lm[:8], pts[200:], lm[200:], (0, 1), shots=(20,))
    assert small["20_std"] == 0.0


def _one_hot_codes(n: int, h: int, w: int) -> torch.Tensor:
    codes = torch.eye(h * w).reshape(h * w, h, w)
    return codes.unsqueeze(0).repeat(n, 1, 1, 1)


def test_matching_error_zero_for_one_hot_position_codes():
    desc = _one_hot_codes(3, 8, 9)
    rng = np.random.default_rng(0)
    lm = np.stack([rng.integers(0, 9, (3, 4)), rng.integers(0, 8, (3, 4))], -1).astype(float)
    assert matching_error(desc, lm, desc, lm) == 0.0
    assert matching_error(desc, lm, desc, lm, metric="dot") == 0.0
    # b's true landmark one pixel to the right of where the code points -> error 1
    assert matching_error(desc, lm, desc, lm + [1.0, 0.0]) == pytest.approx(1.0)
    # b's image content shifted by (2, 1): codes of b moved, landmarks moved with them
    shifted = torch.roll(desc, shifts=(1, 2), dims=(2, 3))
    inner = lm[(lm[..., 0] < 7) & (lm[..., 1] < 7)].reshape(1, -1, 2)
    ok = matching_error(desc[:1], inner, shifted[:1], inner + [2.0, 1.0])
    assert ok == 0.0


def test_sample_descriptors_is_bilinear_in_pixel_coordinates():
    h, w = 5, 7
    ys, xs = torch.meshgrid(torch.arange(h.__float__()), torch.arange(w.__float__()), indexing="ij")
    desc = torch.stack([xs, ys, xs * ys])[None]  # (1, 3, H, W)
    pts = np.array([[[2.25, 1.5], [0.0, 0.0], [6.0, 4.0]]])
    s = sample_descriptors(desc, pts)[0]
    np.testing.assert_allclose(s[:, :2].numpy(), pts[0], atol=1e-5)
    # the bilinear interpolant of x*y at (2.25, 1.5) over its cell equals x*y there
    assert s[0, 2].item() == pytest.approx(2.25 * 1.5, abs=1e-5)


def test_flow_matching_error_zero_for_coordinate_codes():
    n, h, w = 2, 10, 12
    ys, xs = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    flow = np.full((n, h, w, 2), np.nan, np.float32)
    flow[:, 2:6, 1:8] = [3.0, 2.0]  # a patch moving by (3, 2)
    d0 = np.stack([xs, ys])[None].repeat(n, 0)
    # frame t+1 codes: the frame-t coordinate of the material now at each pixel
    d1 = np.stack([xs - 3.0, ys - 2.0])[None].repeat(n, 0)
    assert flow_matching_error(d0, d1, flow) == 0.0
    # a descriptor that ignores the motion is off by exactly |(3, 2)|
    assert flow_matching_error(d0, d0, flow) == pytest.approx(np.hypot(3, 2))
    assert flow_matching_error(d0, d0, flow, percent=True) == pytest.approx(
        100 * np.hypot(3, 2) / w
    )
    # the mask restricts the queried pixels; an empty mask is an error
    mask = np.zeros((n, h, w), bool)
    with pytest.raises(ValueError, match="no pixel"):
        flow_matching_error(d0, d1, flow, mask)


def test_flow_matching_error_on_the_arm_with_oracle_descriptors():
    arm = arm_sequence("test", n_videos=1, frames=4, size=32, seed=0)
    flow = arm.meta["flow"][:3]
    h = w = 32
    ys, xs = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    # oracle: frame t pixel u carries (u + flow); frame t+1 pixel v carries v -> exact matches
    # only up to rounding, since u + flow is not on the pixel grid
    d0 = np.stack([xs + np.nan_to_num(flow[..., 0]), ys + np.nan_to_num(flow[..., 1])], 1)
    d1 = np.stack([xs, ys])[None].repeat(3, 0)
    err = flow_matching_error(d0, d1, flow, arm.meta["mask"][:3], max_points=None)
    assert 0.0 < err <= np.sqrt(0.5) + 1e-6
    assert flow_matching_error(d1, d1, flow, arm.meta["mask"][:3]) > err


def test_pictures(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    pts = rng.uniform(0, 15, (5, 3, 2))
    draw_landmarks(images, pts, tmp_path / "lm.png", true=pts + 1, title="t")
    dense = rng.normal(size=(5, 8, 16, 16)).astype(np.float32)
    draw_embedding_colours(images, dense, tmp_path / "emb.png", mask=np.ones((5, 16, 16), bool))
    for name in ("lm.png", "emb.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 100 and im.size[1] > 50
    rgb = _to_rgb(dense)
    assert rgb.shape == (5, 16, 16, 3) and rgb.min() >= 0 and rgb.max() <= 1
    # three channels are kept as they are (up to the per-channel rescale): order is preserved
    three = _to_rgb(dense[:, :3])
    flat_in = dense[:, 0].ravel()
    flat_out = three[..., 0].ravel()
    inner = (flat_out > 0) & (flat_out < 1)
    assert np.all(np.diff(flat_out[inner][np.argsort(flat_in[inner])]) >= -1e-12)
