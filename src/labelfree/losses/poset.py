"""The Posets objective L = L₁ + λ L₂ (Bautista, Sanakoyeu, Ommer, CVPR 2017; seed 000 §3, Eq. 2–4).

L₁ (Eq. 3) is the surrogate-class cross-entropy of the samples assigned to a class; L₂ (Eq. 4)
is the poset loss of an unassigned sample x_i over the C′ class representatives r_j present in
the mini-batch:

    L₂(x_i) = −log  Σ_{z=1..Z} exp(−(‖φ_i − φ(r_i^z)‖² − γ) / 2σ²)
                    ───────────────────────────────────────────────
                    Σ_{j=1..C′} exp(−‖φ_i − φ(r_j)‖² / 2σ²)

with r_i^z the z-th nearest representative of x_i. With Z = 1 and γ = 0 it is the
cross-entropy of the logits −‖φ_i − φ(r_j)‖²/2σ² with the nearest representative as target.

Our choices where the paper is silent: the logits t_i of L₁ are not a fixed output layer but
cosine similarities to the same class representatives divided by a temperature (classes are
rebuilt every round, so a fixed layer would be re-initialised each time; the representatives
scale to any number of classes, as the paper argues for L₂). The loss is averaged over the
samples that carry each term, L = mean L₁ + λ · mean L₂.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def poset_loss(
    emb: torch.Tensor,
    reps: torch.Tensor,
    nearest: torch.Tensor,
    sigma: float | torch.Tensor,
    gamma: float = 0.0,
) -> torch.Tensor:
    """Mean L₂ (Eq. 4) of the unassigned samples ``emb`` (n, d).

    Args:
        reps: the C′ class representatives φ(r_j) in the batch, (C′, d).
        nearest: (n, Z) column indices into ``reps`` of each sample's Z nearest representatives.
        sigma: σ of Eq. 4. gamma: the margin γ.
    """
    d2 = torch.cdist(emb, reps).pow(2)  # (n, C')
    scale = 1.0 / (2.0 * torch.as_tensor(sigma, dtype=emb.dtype, device=emb.device) ** 2)
    num = torch.logsumexp(-(d2.gather(1, nearest) - gamma) * scale, dim=1)
    den = torch.logsumexp(-d2 * scale, dim=1)
    return (den - num).mean()


def surrogate_loss(
    emb: torch.Tensor, reps: torch.Tensor, target: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Mean L₁ (Eq. 3): cross-entropy of cosine-to-representative logits (see module doc)."""
    logits = F.normalize(emb, dim=1) @ F.normalize(reps, dim=1).T / temperature
    return F.cross_entropy(logits, target)


def posets_objective(
    emb_assigned: torch.Tensor,
    target: torch.Tensor,
    emb_unassigned: torch.Tensor,
    nearest: torch.Tensor,
    reps: torch.Tensor,
    sigma: float | torch.Tensor,
    lam: float = 1.0,
    gamma: float = 0.0,
    temperature: float = 0.1,
) -> torch.Tensor:
    """L = L₁ + λL₂ (Eq. 2); a term with no samples in the batch contributes 0."""
    loss = reps.sum() * 0.0
    if len(emb_assigned):
        loss = loss + surrogate_loss(emb_assigned, reps, target, temperature)
    if len(emb_unassigned) and lam:
        loss = loss + lam * poset_loss(emb_unassigned, reps, nearest, sigma, gamma)
    return loss
