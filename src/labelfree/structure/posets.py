"""Posets' structure step (seed 000 §3.1-3.2; METHODS.md §3): the medoid of each surrogate class
and the y-step of the joint optimisation, which refines the class assignments by gradient ascent
on the relaxed compactness G (the one structure step that uses autograd: the relaxation is
optimised with Adam over soft assignments, never through the network)."""

from __future__ import annotations

import numpy as np
import torch

from labelfree.graph.knn import knn, l2_normalize


def medoids(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Index of each class's medoid: argmin_i Σ_j ‖x_i − x_j‖ over the class members."""
    out = np.empty(n_classes, dtype=np.int64)
    for c in range(n_classes):
        m = np.flatnonzero(y == c)
        xm = x[m]
        d = np.sqrt(np.maximum(((xm[:, None, :] - xm[None, :, :]) ** 2).sum(-1), 0.0))
        out[c] = m[int(d.sum(1).argmin())]
    return out


def refine_assignments(
    x: np.ndarray,
    y: np.ndarray,
    min_class: int,
    steps: int = 100,
    k: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """One y-step of the joint optimisation: maximise the relaxed G over the assigned items."""
    a = np.flatnonzero(y >= 0)
    if len(a) <= k + 1:
        return y.copy()
    classes, ya = np.unique(y[a], return_inverse=True)
    xa = l2_normalize(x[a])
    sims, nn = knn(xa, k)
    s = np.exp(-np.sqrt(np.maximum(2.0 - 2.0 * sims, 0.0)))
    torch.manual_seed(seed)
    rows = torch.as_tensor(np.repeat(np.arange(len(a)), k))
    cols = torch.as_tensor(nn.ravel())
    w = torch.as_tensor(s.ravel(), dtype=torch.float32)
    logits = (5.0 * torch.nn.functional.one_hot(torch.as_tensor(ya), len(classes))).float()
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        p = torch.softmax(logits, dim=1)
        inner = (w[:, None] * p[rows] * p[cols]).sum(0) + (p * p).sum(0)  # Σ_ij s_ij y_ic y_jc
        size = p.sum(0)
        g = (inner / size.clamp_min(1e-6) ** 2).sum()
        penalty = 10.0 * torch.relu(min_class - size).pow(2).sum()  # classes of ≥ t items
        loss = -g + penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
    new = classes[logits.detach().argmax(1).numpy()]
    out = np.full_like(y, -1)
    out[a] = new
    vals, counts = np.unique(new, return_counts=True)
    out[np.isin(out, vals[counts < min_class])] = -1
    return out
