"""Soft-target contrastive loss: the batch's similarity distribution made to match a target one.

Used by the diffusion embedding (:mod:`labelfree.methods.diffusion`): each item's softmax over
the cosine similarities to the other items of its batch is pulled toward the item's manifold
(diffusion) similarities to them. With one-hot targets it is InfoNCE; with the targets of a
label matrix it is the supervised-contrastive loss of Khosla et al. (2020, "outside" form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    emb: torch.Tensor, target: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Mean over rows with any target mass of the cross-entropy H(p_i, q_i).

    q_i = softmax_j≠i(z_i·z_j / temperature) over the other items of the batch, p_i = the row's
    non-negative ``target`` weights normalised to sum 1 (the diagonal is ignored). ``emb`` is
    ``(B, D)`` L2-normalised, ``target`` ``(B, B)``. Rows without target mass contribute nothing;
    a batch without any returns a zero that still depends on ``emb`` (so backward works).
    """
    b = emb.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=emb.device)
    logits = (emb @ emb.t() / temperature).masked_fill(eye, float("-inf"))
    logq = F.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    t = target.to(emb.dtype).masked_fill(eye, 0.0)
    mass = t.sum(dim=1)
    rows = mass > 0
    if not bool(rows.any()):
        return emb.sum() * 0.0
    p = t[rows] / mass[rows, None]
    return -(p * logq[rows]).sum(dim=1).mean()
