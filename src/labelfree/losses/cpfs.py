"""Cross-pixel optical-flow similarity losses (seed 004 Ch.8 §3; METHODS.md §6.5).

A network maps an image to a field of pixel embeddings φ_p; on P sampled pixels of a frame with
optical flow f, the embedding kernel K_φ(p, q) = ¼·cos(φ_p, φ_q) is matched to the flow kernel
K_f(p, q) = exp(−‖f_p − f_q‖² / 2σ²) (eq. 2), σ² = 0.0036 on flow normalised by eq. 7. Three
ways to match them:

- ``ce`` (eq. 4): −Σ_q Σ_p S_f(p, q) log S_φ(p, q), S_* the softmax of each row of K_* whose
  diagonal logit is fixed to 0 (eq. 5: "each pixel is trivially similar to itself");
- ``ce-rev`` (eq. 6): the same with the two distributions swapped;
- ``kta`` (eq. 3): kernel-target alignment ⟨K_φ, K_f⟩ / √(⟨K_φ, K_φ⟩⟨K_f, K_f⟩), maximised.

and the chapter's baseline (§4.5), per-axis classification of the normalised flow into 16
uniform bins of [−1, 1] by softmax cross-entropy.

Choices the text leaves open: the cross-entropies are summed over the P rows, as eq. 4 does,
then divided by P (the mean row cross-entropy), so the loss scale and the learning rate do not
depend on how many pixels are sampled; every loss is averaged over the images of a batch. The
kernels are symmetric, so the text's column normalisation and eq. 5's row normalisation agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

OBJECTIVES = ("ce", "ce-rev", "kta", "classify")


def normalise_flow(flow: torch.Tensor, flow_max: float = 56.0) -> torch.Tensor:
    """Eq. 7: each component f ↦ sign(f)·min(1, log(|f| + 1) / log(M + 1)), M = ``flow_max``."""
    mag = torch.log1p(flow.abs()) / math.log1p(flow_max)
    return torch.sign(flow) * mag.clamp(max=1.0)


def embedding_kernel(phi: torch.Tensor) -> torch.Tensor:
    """Eq. 2 left: (B, P, D) embeddings → (B, P, P) ¼·cosine similarities."""
    u = F.normalize(phi, dim=-1)
    return 0.25 * u @ u.transpose(1, 2)


def flow_kernel(flow: torch.Tensor, sigma2: float | torch.Tensor) -> torch.Tensor:
    """Eq. 2 right: (B, P, 2) flows → (B, P, P) exp(−‖f_p − f_q‖² / 2σ²)."""
    d2 = torch.cdist(flow, flow).square()
    return torch.exp(-d2 / (2 * sigma2))


def log_diag_softmax(kernel: torch.Tensor) -> torch.Tensor:
    """Eq. 5 in log space: each row's softmax with its diagonal logit replaced by 0."""
    eye = torch.eye(kernel.shape[-1], dtype=torch.bool, device=kernel.device)
    return torch.log_softmax(kernel.masked_fill(eye, 0.0), dim=-1)


def kernel_alignment(k1: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:
    """Eq. 3: (B,) kernel-target alignment of two (B, P, P) kernels."""
    num = (k1 * k2).sum((1, 2))
    return num / torch.sqrt(k1.square().sum((1, 2)) * k2.square().sum((1, 2)))


def cpfs_loss(
    phi: torch.Tensor,
    flow: torch.Tensor,
    objective: str = "ce",
    sigma2: float | torch.Tensor = 0.0036,
) -> torch.Tensor:
    """The CPFS loss of ``phi`` (B, P, D) against normalised ``flow`` (B, P, 2) at the same P
    pixels, averaged over the batch (see the module docstring for the objectives)."""
    if objective not in ("ce", "ce-rev", "kta"):
        raise ValueError(f"unknown CPFS objective {objective!r}; choose ce, ce-rev or kta")
    k_phi, k_f = embedding_kernel(phi), flow_kernel(flow, sigma2)
    if objective == "kta":
        return -kernel_alignment(k_phi, k_f).mean()
    log_phi, log_f = log_diag_softmax(k_phi), log_diag_softmax(k_f)
    if objective == "ce":
        per_row = -(log_f.exp() * log_phi).sum(-1)
    else:
        per_row = -(log_phi.exp() * log_f).sum(-1)
    return per_row.mean()


def flow_bins(flow: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Normalised flow in [−1, 1] → the index of its uniform bin, per component (§4.5)."""
    return ((flow + 1) / 2 * bins).floor().clamp(0, bins - 1).long()


def flow_classification_loss(
    logits: torch.Tensor, flow: torch.Tensor, bins: int = 16
) -> torch.Tensor:
    """The chapter's baseline: ``logits`` (B, P, 2·bins) — the x bins then the y bins — against
    the bins of normalised ``flow`` (B, P, 2); the mean of the two axes' cross-entropies."""
    target = flow_bins(flow, bins)
    lx = F.cross_entropy(logits[..., :bins].reshape(-1, bins), target[..., 0].reshape(-1))
    ly = F.cross_entropy(logits[..., bins:].reshape(-1, bins), target[..., 1].reshape(-1))
    return 0.5 * (lx + ly)


def cell_flow(flow: np.ndarray, stride: int = 2) -> np.ndarray:
    """(N, H, W, 2) pixel flow → (N, H/stride, W/stride, 2): the mean over each cell's pixels
    (NaN when any of them has none), the flow of a cell of a stride-``stride`` map."""
    n, h, w, _ = flow.shape
    h2, w2 = h // stride, w // stride
    f = flow[:, : h2 * stride, : w2 * stride].reshape(n, h2, stride, w2, stride, 2)
    return f.mean(axis=(2, 4)).astype(np.float32)


def gather_cells(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) maps at (B, P) flat cell indices → (B, P, C)."""
    flat = maps.flatten(2)
    return torch.gather(flat, 2, cells[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)
