"""A memory bank: the embedding of every training item, each row replaced by the newest view of
that item as the batches go by — the reference set of ROUL's MS loss (seed 003 §3.3; the
"memory bank" of Wu et al. 2018 that the paper follows). A registered buffer, so it moves with
``.to(device)`` and is saved with ``state_dict()``; no loss writes into a structure's arrays."""

from __future__ import annotations

import torch
from torch import nn


class MemoryBank(nn.Module):
    """``keys`` (N, d): one embedding per training item."""

    keys: torch.Tensor

    def __init__(self, embeddings: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("keys", embeddings.detach().clone())

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @torch.no_grad()
    def update(self, idx: torch.Tensor, emb: torch.Tensor) -> None:
        """Store ``emb`` (the newest views) as the entries of items ``idx``."""
        self.keys[idx] = emb.detach().to(self.keys.dtype)
