"""Landmark and matching probes for pixel-level representations (seed 004, Ch.4–7).

A label-free network is frozen and probed with annotated landmarks only at evaluation time:

* **Regression probe** (Ch.4 §4, Ch.5 §5.2, Ch.7 §4.1): a *bias-free* linear map from the
  network's ``P`` points (the ``K`` soft-argmax landmarks of ``fse``, or ``M`` virtual points
  of a dense embedding) to the ``L`` annotated landmarks, fitted on annotated training images;
  the error is the mean distance to the true landmarks in percent of the inter-ocular distance
  (IOD), the MAFL/AFLW protocol. :func:`landmark_probe` adds the few-shot curve (1, 5, 10, 20
  annotated images, Ch.7 Table 3) and :func:`mean_shape_error` the trivial baseline.
* **Nearest-label matching** (Ch.6 §4.1, Ch.7 Table 1): the descriptor at a landmark of image
  ``a`` is matched to the nearest descriptor over *all* pixels of image ``b``; the error is the
  pixel distance of the match to ``b``'s own landmark. :func:`flow_matching_error` does the
  same for every foreground pixel of a video frame against the exact optical flow.
* Pictures: :func:`draw_landmarks` and :func:`draw_embedding_colours`.

Conventions: points and landmarks are ``(N, ·, 2)`` arrays of pixel ``(x, y)`` (``x`` the column,
pixel centres at integers); dense descriptors are ``(N, D, H, W)`` (the layout networks emit).
"""

from __future__ import annotations

from labelfree.evaluate.dense_matching import (
    flow_matching_error,
    matching_error,
    sample_descriptors,
)
from labelfree.evaluate.landmark_drawing import (  # noqa: F401  (_to_rgb re-exported)
    _to_rgb,
    draw_embedding_colours,
    draw_landmarks,
)
from labelfree.evaluate.landmark_regression import (  # noqa: F401  (re-exported)
    DEFAULT_RIDGE,
    fit_landmark_regressor,
    iod_error,
    landmark_probe,
    mean_shape_error,
    predict_landmarks,
)

__all__ = [
    "draw_embedding_colours",
    "draw_landmarks",
    "fit_landmark_regressor",
    "flow_matching_error",
    "iod_error",
    "landmark_probe",
    "matching_error",
    "mean_shape_error",
    "predict_landmarks",
    "sample_descriptors",
]

#: The probe errors a frame run reports (lower is better), in table order.
FRAME_METRICS = (
    "iod_error_all",
    "iod_error_1",
    "iod_error_5",
    "iod_error_10",
    "iod_error_20",
    "matching_px",
    "flow_matching_px",
    "flow_matching_pct",
)
