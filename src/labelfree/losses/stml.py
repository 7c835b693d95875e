"""The losses of Self-Taught Metric Learning (Kim, Kim, Cho, Kwak, CVPR 2022; METHODS.md §8):
the teacher's contextualised similarity, the relaxed contrastive loss on mean-normalised
distances, and the self-distillation between the student's two heads."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "contextual_similarity",
    "mean_normalised_distances",
    "relaxed_contrastive",
    "self_distillation",
    "teacher_similarity",
]


def teacher_similarity(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """``W_P[i, j] = exp(−‖t_i − t_j‖² / σ)`` on L2-normalised teacher embeddings (STML Eq. 2)."""
    t = F.normalize(t, dim=1)
    return torch.exp(-torch.cdist(t, t).pow(2) / sigma)


def contextual_similarity(w_p: torch.Tensor, same: torch.Tensor, k: int) -> torch.Tensor:
    """The contextualised similarity ``W_C`` of a batch (STML §3.2, Eqs. 3-5).

    ``same[i, j]``: items ``i`` and ``j`` are views of one image (their similarity is set to 1,
    so each view's neighbourhood holds its twin). ``N(i)``: the ``k`` most similar items,
    itself included; ``R(i)``: the k-reciprocal ones (``j ∈ N(i)`` and ``i ∈ N(j)``).
    ``W̃[i, j] = |R(i) ∩ R(j)| / |R(i)|`` for ``j ∈ R(i)``, else 0; query expansion averages
    the rows of ``i``'s ``round(k/2)`` nearest (``Ŵ[i] = mean_{m ∈ N_{k/2}(i)} W̃[m]``);
    ``W_C = (Ŵ + Ŵᵀ) / 2``.
    """
    w = w_p.clone()
    w[same] = 1.0
    top = torch.topk(w, k, dim=1).indices
    member = torch.zeros_like(w).scatter_(1, top, 1.0)
    mutual = member * member.t()  # R: both directions
    shared = mutual @ mutual.t()  # |R(i) ∩ R(j)|
    w_tilde = mutual * shared / mutual.sum(dim=1, keepdim=True)
    half = top[:, : int(np.around(k / 2))]
    w_hat = w_tilde[half].mean(dim=1)
    return (w_hat + w_hat.t()) / 2


def mean_normalised_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances divided by their row mean (STML's d̃, scale-free). Squared
    distances from the Gram matrix (‖x_i‖² + ‖x_j‖² − 2 x_i·x_j: an (N, N) product, not an
    (N, N, D) difference — 2-3× faster with the 1,024-d wide head, forward and backward); the
    square root is taken of a clamped square, so identical rows have a zero, finite-gradient
    distance."""
    norms = x.pow(2).sum(dim=1)
    sq = norms[:, None] + norms[None, :] - 2.0 * (x @ x.t())
    d = torch.sqrt(sq.clamp_min(1e-12)) * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))
    return d / d.mean(dim=1, keepdim=True)


def relaxed_contrastive(
    x: torch.Tensor, w: torch.Tensor, delta: float, d: torch.Tensor | None = None
) -> torch.Tensor:
    """``Σ_{i≠j} w_ij d̃_ij² + (1 − w_ij) [δ − d̃_ij]_+²`` over ``N(N−1)`` (STML Eq. 6).
    ``d``: ``mean_normalised_distances(x)`` when the caller has it already."""
    n = len(x)
    d = mean_normalised_distances(x) if d is None else d
    off = 1 - torch.eye(n, device=x.device, dtype=x.dtype)
    pull = w * d.pow(2)
    push = (1 - w) * F.relu(delta - d).pow(2)
    return ((pull + push) * off).sum() / (n * (n - 1))


def self_distillation(
    f: torch.Tensor,
    g: torch.Tensor,
    d_f: torch.Tensor | None = None,
    d_g: torch.Tensor | None = None,
) -> torch.Tensor:
    """``KL(softmax(−d̃_g) ‖ softmax(−d̃_f))`` per row, averaged; the wide head ``g`` is the
    target and gets no gradient (STML Eq. 7). ``d_f``, ``d_g``: their mean-normalised
    distances when the caller has them already."""
    d_f = mean_normalised_distances(f) if d_f is None else d_f
    d_g = mean_normalised_distances(g) if d_g is None else d_g
    log_q = F.log_softmax(-d_f, dim=1)
    p = F.softmax(-d_g.detach(), dim=1)
    return F.kl_div(log_q, p, reduction="sum") / len(f)
