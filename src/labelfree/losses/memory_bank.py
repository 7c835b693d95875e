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

    @torch.no_grad()
    def update_momentum(self, idx: torch.Tensor, emb: torch.Tensor, momentum: float) -> None:
        """Running average, renormalised: ``v_i ← normalize(m·v_i + (1 − m)·f_i)`` (Wu et al.
        2018, §3.1, m = 0.5)."""
        mixed = momentum * self.keys[idx] + (1.0 - momentum) * emb.detach().to(self.keys.dtype)
        self.keys[idx] = torch.nn.functional.normalize(mixed, dim=1)


def bank_softmax_loss(
    emb: torch.Tensor, idx: torch.Tensor, keys: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Non-parametric softmax (Wu et al. 2018, Eq. 2): every training item is its own class, its
    memory-bank entry its weight; ``−log softmax(f·Vᵀ/τ)[i]`` averaged over the batch."""
    return torch.nn.functional.cross_entropy(emb @ keys.t() / temperature, idx)


def bank_nce_loss(
    emb: torch.Tensor,
    idx: torch.Tensor,
    keys: torch.Tensor,
    noise: torch.Tensor,
    temperature: float,
    log_z: float,
) -> torch.Tensor:
    """Noise-contrastive estimation of the non-parametric softmax (Wu et al. 2018, Eqs. 3-5):
    ``P(i|f) = exp(f·v_i/τ) / Z`` with ``Z`` a constant (``log_z``), ``h = P / (P + m/N)`` for
    ``m`` = ``noise.shape[1]`` uniform noise items; loss ``−log h(i) − Σ_noise log(1 − h(j))``,
    averaged over the batch. ``noise`` (B, m) are bank indices drawn uniformly."""
    n, m = keys.shape[0], noise.shape[1]
    log_pn = torch.log(torch.tensor(m / n, dtype=emb.dtype, device=emb.device))
    log_p_pos = (emb * keys[idx]).sum(dim=1) / temperature - log_z
    log_p_neg = torch.einsum("bd,bmd->bm", emb, keys[noise]) / temperature - log_z
    # log h = log P − log(P + m/N); log(1 − h) = log(m/N) − log(P + m/N)
    pos = log_p_pos - torch.logaddexp(log_p_pos, log_pn)
    neg = log_pn - torch.logaddexp(log_p_neg, log_pn)
    return -(pos + neg.sum(dim=1)).mean()
