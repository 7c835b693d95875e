"""ROC curves of the exemplar protocol: per-query vertices and their value at the grid FPRs.

The interpolation rule (linear between vertices, the upper end of a vertical jump) and why the
per-query ROC is computed directly rather than with scikit-learn are explained in
:mod:`labelfree.evaluate.exemplar`.
"""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError

__all__ = ["FPR_GRID", "interpolate_roc"]

#: The 101 false-positive rates at which per-query curves are averaged.
FPR_GRID = np.linspace(0.0, 1.0, 101)


def interpolate_roc(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray = FPR_GRID) -> np.ndarray:
    """TPR of a ROC curve (vertices ``fpr``, ``tpr``, non-decreasing) at the ``grid`` FPRs.

    Linear between vertices; at a vertical jump the upper end (see the docstring of
    :mod:`labelfree.evaluate.exemplar`).
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if fpr.ndim != 1 or fpr.shape != tpr.shape or len(fpr) < 2 or fpr[0] > grid.min():
        raise DataError("a ROC curve needs >= 2 vertices starting at the smallest grid FPR")
    hi = np.searchsorted(fpr, grid, side="right")  # first vertex with FPR > g
    lo = hi - 1  # last vertex with FPR <= g: the top of a jump at g
    inside = hi < len(fpr)
    hi_c = np.minimum(hi, len(fpr) - 1)
    t = np.where(inside, (grid - fpr[lo]) / np.where(inside, fpr[hi_c] - fpr[lo], 1.0), 0.0)
    return np.where(inside, tpr[lo] + t * (tpr[hi_c] - tpr[lo]), tpr[-1])


def _roc(scores: np.ndarray, is_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC vertices (FPR, TPR) and exact area of one query's labelled frames.

    The vertices of ``sklearn.metrics.roc_curve(is_pos, scores, drop_intermediate=False)``
    (one per distinct score, from (0, 0)), computed directly: sklearn's input validation cost
    ~9 ms per call, which dominated the protocol.
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    y = is_pos[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last item of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps] / tps[-1]
    fpr = np.r_[0.0, fps] / fps[-1]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))
