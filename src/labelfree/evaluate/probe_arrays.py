"""Input checks shared by the landmark probes (:mod:`labelfree.evaluate.landmarks`).

Points and landmarks are ``(N, ·, 2)`` arrays of pixel ``(x, y)``; dense descriptors are
``(N, D, H, W)``. Both may come as numpy arrays or torch tensors.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_points(points: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{what} must be an (N, P, 2) array of (x, y), got shape {arr.shape}")
    return arr.astype(np.float64)


def _as_dense(desc: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    t = desc.detach() if isinstance(desc, torch.Tensor) else torch.from_numpy(np.asarray(desc))
    if t.ndim != 4:
        raise ValueError(f"{what} must be (N, D, H, W), got shape {tuple(t.shape)}")
    return t.float().cpu()
