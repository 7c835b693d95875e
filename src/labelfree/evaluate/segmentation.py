"""Per-pixel segmentation probes of a frozen representation (seed 004 Ch.8 evaluates CPFS by
transfer to segmentation; here, on frames with exact object masks, two frozen probes):

- a linear probe: multinomial logistic regression from each pixel's features to its object
  category, fitted on pixels of training frames, scored by mIoU on held-out frames;
- nearest-neighbour label transfer: each held-out pixel takes the category of the most similar
  (cosine) training pixel.

Pixels are the cells of a stride-2 map; a cell's label is that of its top-left pixel (the maps'
cell (i, j) covers pixels 2i…2i+1 × 2j…2j+1).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "cell_labels",
    "flat_cells",
    "linear_probe_miou",
    "miou",
    "nn_transfer_miou",
    "sample_cells",
]


def miou(pred: np.ndarray, true: np.ndarray, n_classes: int) -> float:
    """Mean intersection-over-union over the classes present in ``true`` or ``pred``."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    ious = []
    for c in range(n_classes):
        p, t = pred == c, true == c
        union = np.count_nonzero(p | t)
        if union:
            ious.append(np.count_nonzero(p & t) / union)
    return float(np.mean(ious)) if ious else float("nan")


def cell_labels(segmentation: np.ndarray, stride: int = 2) -> np.ndarray:
    """(N, H, W) per-pixel labels → (N, H/stride, W/stride) labels of the map cells."""
    return np.asarray(segmentation)[:, ::stride, ::stride]


def sample_cells(n_cells: int, k: int, seed: int) -> np.ndarray:
    """``k`` distinct flat cell indices out of ``n_cells`` (all of them when k ≥ n_cells)."""
    if k >= n_cells:
        return np.arange(n_cells)
    return np.sort(np.random.default_rng(seed).choice(n_cells, k, replace=False))


def linear_probe_miou(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    seed: int = 0,
) -> float:
    """mIoU of a logistic regression (standardised inputs, L2 C = 1, 200 lbfgs iterations)
    fitted on (n, C) features and their labels, predicting the held-out ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float("nan")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=200, random_state=seed)
    with warnings.catch_warnings():  # a probe: 200 lbfgs steps, converged or not
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_x), train_y)
    return miou(clf.predict(scaler.transform(test_x)), test_y, n_classes)


def nn_transfer_miou(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    chunk: int = 4096,
) -> float:
    """mIoU when each held-out pixel takes the label of its most cosine-similar training pixel
    (ties: the first)."""
    a = torch.nn.functional.normalize(torch.as_tensor(train_x).float(), dim=1)
    y = torch.as_tensor(np.asarray(train_y))
    pred = []
    for s in range(0, len(test_x), chunk):
        q = torch.nn.functional.normalize(torch.as_tensor(test_x[s : s + chunk]).float(), dim=1)
        pred.append(y[(q @ a.T).argmax(1)])
    return miou(torch.cat(pred).numpy(), test_y, n_classes)


def flat_cells(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, h, w) maps → (N·h·w, C) float32 rows, cells in the order of
    ``cell_labels(...).ravel()``."""
    f = torch.as_tensor(features).float()
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).numpy()
