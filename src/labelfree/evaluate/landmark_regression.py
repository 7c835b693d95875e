"""Landmark regression probe (seed 004 Ch.4 §4, Ch.5 §5.2, Ch.7 §4.1).

A *bias-free* linear map from the network's ``P`` points to the ``L`` annotated landmarks,
fitted on annotated training images; the error is the mean distance to the true landmarks in
percent of the inter-ocular distance (IOD). :func:`landmark_probe` adds the few-shot curve and
:func:`mean_shape_error` the trivial baseline. See :mod:`labelfree.evaluate.landmarks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from labelfree.evaluate.probe_arrays import _as_points

__all__ = [
    "DEFAULT_RIDGE",
    "fit_landmark_regressor",
    "iod_error",
    "landmark_probe",
    "mean_shape_error",
    "predict_landmarks",
]

#: Default relative ridge of :func:`fit_landmark_regressor` (see there).
DEFAULT_RIDGE = 1e-2


def fit_landmark_regressor(
    points_train: np.ndarray | torch.Tensor,
    landmarks_train: np.ndarray | torch.Tensor,
    ridge: float = DEFAULT_RIDGE,
) -> np.ndarray:
    """Bias-free linear map ``W`` (``(2P, 2L)``) from flattened points to flattened landmarks.

    Seed 004 Ch.4 §4 ("a linear regressor without bias from the 2K landmark coordinates to the
    annotated ones"). Solves ``min_W ‖X W − Y‖² + λ‖W‖²`` with ``X`` the ``(N, 2P)`` points
    ``[x₁, y₁, x₂, y₂, …]`` and ``Y`` the ``(N, 2L)`` landmarks, as one least-squares problem on
    ``[X; √λ I]`` (numerically stable). The thesis leaves the regulariser open (plain least
    squares); here ``λ = ridge · mean(X²)``, i.e. in units of the mean squared coordinate (so
    it does not depend on the image size) and *not* growing with ``N``: with all training
    images the fit is effectively unregularised, while in the few-shot regime (``N`` near or
    below ``2P``) it tames the interpolation peak of plain least squares. With the default
    1e-2, on synthetic faces with 1-px noisy oracle points the few-shot curve (1/5/10/20/all
    images) reads 55/12/10/8/6.6 % IOD against 55/13/35/9/6.6 % with ``ridge ≈ 0``.
    """
    x = _as_points(points_train, "points_train")
    y = _as_points(landmarks_train, "landmarks_train")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need matching, non-empty point sets; got {len(x)} and {len(y)} images")
    xf = x.reshape(len(x), -1)
    yf = y.reshape(len(y), -1)
    d = xf.shape[1]
    lam = float(ridge) * float((xf**2).mean())
    a = np.concatenate([xf, np.sqrt(lam) * np.eye(d)], axis=0)
    b = np.concatenate([yf, np.zeros((d, yf.shape[1]))], axis=0)
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    return w


def predict_landmarks(w: np.ndarray, points: np.ndarray | torch.Tensor) -> np.ndarray:
    """Apply a regressor from :func:`fit_landmark_regressor`: ``(N, P, 2)`` -> ``(N, L, 2)``."""
    x = _as_points(points, "points")
    out = x.reshape(len(x), -1) @ np.asarray(w)
    return out.reshape(len(x), -1, 2)


def iod_error(
    pred: np.ndarray | torch.Tensor, true: np.ndarray | torch.Tensor, iod: Sequence[int]
) -> float:
    """Mean landmark error in percent of the inter-ocular distance.

    ``mean over images and landmarks of ‖pred − true‖ / ‖true[iod[0]] − true[iod[1]]‖ · 100``
    (the MAFL / AFLW protocol of seed 004 Ch.4 Table 1; for 300-W, ``iod`` names the outer eye
    corners).
    """
    p = _as_points(pred, "pred")
    t = _as_points(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and true {t.shape} differ")
    i, j = int(iod[0]), int(iod[1])
    dist = np.linalg.norm(t[:, i] - t[:, j], axis=1)
    if np.any(dist <= 0):
        raise ValueError("an image has zero inter-ocular distance")
    err = np.linalg.norm(p - t, axis=2) / dist[:, None]
    return float(100.0 * err.mean())


def mean_shape_error(
    lm_train: np.ndarray | torch.Tensor, lm_test: np.ndarray | torch.Tensor, iod: Sequence[int]
) -> float:
    """The trivial baseline: predict the mean training shape for every test image (% IOD)."""
    tr = _as_points(lm_train, "lm_train")
    te = _as_points(lm_test, "lm_test")
    pred = np.broadcast_to(tr.mean(axis=0, keepdims=True), te.shape)
    return iod_error(pred, te, iod)


def landmark_probe(
    points_train: np.ndarray | torch.Tensor,
    lm_train: np.ndarray | torch.Tensor,
    points_test: np.ndarray | torch.Tensor,
    lm_test: np.ndarray | torch.Tensor,
    iod: Sequence[int],
    shots: Sequence[int | None] = (1, 5, 10, 20, None),
    seed: int = 0,
    draws: int = 10,
    ridge: float = DEFAULT_RIDGE,
) -> dict[str, float]:
    """Regression probe with a few-shot curve.

    For each entry of ``shots``, a regressor is fitted on that many annotated training images
    (``None`` = all of them) and evaluated on the whole test set with :func:`iod_error`.
    Few-shot values are the mean over ``draws`` random draws of the training images (seeded by
    ``seed``; the thesis uses fixed subsets, Ch.7 Table 3 — with synthetic data, averaging draws
    is the less noisy choice); a shot count not below the training-set size uses every image
    once.

    Returns:
        ``{"all": err, "1": err, "5": err, ...}`` in % IOD, and ``"1_std"``, ``"5_std"``, ...
        the standard deviation over the draws.
    """
    xtr = _as_points(points_train, "points_train")
    ytr = _as_points(lm_train, "lm_train")
    xte = _as_points(points_test, "points_test")
    yte = _as_points(lm_test, "lm_test")
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for shot in shots:
        if shot is None or int(shot) >= len(xtr):
            w = fit_landmark_regressor(xtr, ytr, ridge)
            err = iod_error(predict_landmarks(w, xte), yte, iod)
            key = "all" if shot is None else str(int(shot))
            out[key] = err
            if shot is not None:
                out[f"{key}_std"] = 0.0
            continue
        errs = []
        for _ in range(max(1, int(draws))):
            pick = rng.choice(len(xtr), size=int(shot), replace=False)
            w = fit_landmark_regressor(xtr[pick], ytr[pick], ridge)
            errs.append(iod_error(predict_landmarks(w, xte), yte, iod))
        out[str(int(shot))] = float(np.mean(errs))
        out[f"{int(shot)}_std"] = float(np.std(errs))
    return out
