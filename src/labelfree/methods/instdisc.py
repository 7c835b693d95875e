"""Instance discrimination (Wu, Xiong, Yu, Lin, CVPR 2018; METHODS.md §8): the "no structure at
all" baseline. Every training image is its own class; a memory bank holds one L2-normalised
embedding per image, updated as a running average (momentum 0.5) by each batch; the loss is the
non-parametric softmax over the bank (Eq. 2) at temperature τ, computed in full (default: our
collections are small enough) or estimated by NCE with ``nce_k`` uniform noise items (Eqs. 3-5,
the normalising constant Z estimated once on the first batch and then fixed, as in the authors'
code). Augmentation supplies the invariance (the encoder's, as for every method).

Choices: τ = 0.1 (the paper's 0.07 is for ImageNet-sized images; METHODS.md §8 gives 0.1 for
small ones); the bank starts from the start network's embedding of every image instead of random
unit vectors, since every method here starts from a pretrained-style network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelfree.losses.memory_bank import MemoryBank, bank_nce_loss, bank_softmax_loss
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.options import AT_LEAST_1, POSITIVE, UNIT
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure


@dataclass
class InstanceStructure(Structure):
    """The memory bank (N × d, one entry per training image) and, for NCE, ``log_z`` (NaN
    until the first batch estimates it)."""

    bank: MemoryBank
    log_z: float = float("nan")


@register_method
class InstanceDiscrimination(Method):
    """Non-parametric instance discrimination with a memory bank (Wu et al. 2018)."""

    name = "instdisc"
    option_ranges = {"temperature": POSITIVE, "momentum": UNIT, "nce_k": AT_LEAST_1}
    option_choices = {"objective": ("softmax", "nce")}

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        momentum: float = 0.5,
        objective: str = "softmax",
        nce_k: int = 4096,
        encoder: Encoder = Encoder(),
        training: Training = Training(),
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        temperature: τ of the softmax over the bank (0.07 in the paper on ImageNet, 0.1 on
            small images).
        momentum: the bank's running average, ``v ← normalize(m·v + (1 − m)·f)`` (0.5).
        objective: ``softmax`` (exact, over all N entries) or ``nce`` (Wu et al.'s estimate).
        nce_k: noise items per example for ``nce`` (4,096 in the paper; at most N − 1).
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.temperature, self.momentum = temperature, momentum
        self.objective, self.nce_k = objective, nce_k

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> InstanceStructure:
        """The bank: the current network's embedding of every image."""
        start = ctx.embedding() if ctx is not None else reps
        keys = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(start)), dim=1)
        return InstanceStructure(bank=MemoryBank(keys.float()))

    def batches(
        self,
        structure: InstanceStructure,
        rng: np.random.Generator,
        ctx: EpochContext | None = None,
    ) -> list[dict[str, Any]]:
        """Each image once per epoch, in random batches; NCE noise drawn here (seeded)."""
        n, b = len(structure.bank), self.training.batch_size
        order = rng.permutation(n)
        out = []
        for s in range(0, n, b):
            batch: dict[str, Any] = {"indices": order[s : s + b]}
            if self.objective == "nce":
                k = min(self.nce_k, n - 1)
                batch["noise"] = rng.integers(0, n, size=(len(batch["indices"]), k))
            out.append(batch)
        return out

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: InstanceStructure
    ) -> torch.Tensor:
        bank = structure.bank.to(emb.device)
        idx = torch.as_tensor(batch["indices"], device=emb.device)
        if self.objective == "softmax":
            # a copy: the update below writes the bank in place, autograd keeps what it read
            loss = bank_softmax_loss(emb, idx, bank.keys.clone(), self.temperature)
        else:
            noise = torch.as_tensor(batch["noise"], device=emb.device)
            if math.isnan(structure.log_z):  # Z ≈ N · mean exp(f·v/τ), fixed from here on
                with torch.no_grad():
                    sims = torch.einsum("bd,bmd->bm", emb, bank.keys[noise]) / self.temperature
                    mean_exp = torch.logsumexp(sims.flatten(), 0) - math.log(sims.numel())
                    structure.log_z = float(mean_exp) + math.log(len(bank))
            loss = bank_nce_loss(emb, idx, bank.keys, noise, self.temperature, structure.log_z)
        bank.update_momentum(idx, emb, self.momentum)
        return loss
