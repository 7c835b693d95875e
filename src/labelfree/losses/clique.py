"""CliqueCNN's loss (seed 001 §3.2.4; METHODS.md §2): each sample of a batch is classified into
its clique among the batch's r cliques, by cosine similarity to leave-one-out clique prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clique_batch_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """r-way classification of each sample into its clique by cosine to leave-one-out clique
    prototypes (every clique in the batch must have ≥ 2 samples)."""
    e = F.normalize(emb, dim=1)
    r = int(labels.max()) + 1
    onehot = F.one_hot(labels, r).to(e.dtype)
    sums = onehot.T @ e  # (r, d)
    counts = onehot.sum(0)
    protos = F.normalize(sums / counts[:, None], dim=1)
    logits = e @ protos.T
    own = F.normalize(sums[labels] - e, dim=1)
    own_logit = (e * own).sum(1)
    logits = torch.where(onehot.bool(), own_logit[:, None], logits)
    return F.cross_entropy(logits / temperature, labels)
