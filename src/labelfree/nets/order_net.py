"""Φ_θ, ROUL's relative-order prediction network (seed 003 §3.3, Fig. 4).

The paper feeds "the feature maps" of the anchor A and of the comparison images, "cascaded
together", to a network that outputs the N×N order matrix, and leaves the design open. Choices
(documented because ours is the reference implementation):

- Input: the *embeddings* F(A), F(C_n) (the L2-normalised output of the feature network), not
  intermediate convolutional maps: the training loop hands a method only the embeddings, and the
  embedding is what both the feature-head and CNN starts share. They are detached, so the order
  loss trains Φ only (cooperative training, see :mod:`labelfree.methods.roul`).
- Pair scorer: h(n, m) = MLP([F(A), F(C_n), F(C_m), F(A)⊙F(C_n), F(A)⊙F(C_m)]), one hidden
  layer (ReLU); Ô(n, m) = tanh(h(n, m) − h(m, n)). Ô is exactly anti-symmetric with a zero
  diagonal, like O, and lies in (−1, 1). The first linear layer is applied to each part
  separately and summed (the same function as on the concatenation), so a query's N² pairs cost
  N²·hidden operations — cheap enough for test-time re-ranking.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class OrderNet(nn.Module):
    """Predicts (G, N, N) relative orders from anchor (G, d) and comparison (G, N, d) embeddings."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.anchor = nn.Linear(dim, hidden)
        self.first = nn.Linear(2 * dim, hidden, bias=False)  # [F(C_n), F(A)⊙F(C_n)] as C_n
        self.second = nn.Linear(2 * dim, hidden, bias=False)  # the same parts, as C_m
        self.out = nn.Linear(hidden, 1)

    def config(self) -> dict[str, Any]:
        return {"type": "order-net", "dim": self.dim, "hidden": self.hidden}

    def scores(self, anchor: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """h(n, m) for every pair: (G, N, N)."""
        parts = torch.cat([items, anchor[:, None, :] * items], dim=-1)  # (G, N, 2d)
        a = self.anchor(anchor)[:, None, None, :]
        h = torch.relu(a + self.first(parts)[:, :, None, :] + self.second(parts)[:, None, :, :])
        return self.out(h).squeeze(-1)

    def forward(self, anchor: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Ô: (G, N, N) in (−1, 1), anti-symmetric."""
        s = self.scores(anchor, items)
        return torch.tanh(s - s.transpose(1, 2))
