"""ROUL: relative order analysis and optimisation (Kan et al., CVPR 2021; seed 003, METHODS.md §4).

No public code exists: every choice the paper leaves open is named here and in the options.
Structure step (§3.1): k-means (faiss) on the current representation (g(x) in round 0, the
embedding later), cores Ω_m within Δ = ⅓ of the smallest centre distance (Eq. 2), a memory bank
holding the current embedding of every training item. Batches: groups [A, A_1..A_L, B_1..B_P,
C_1..C_Q] (anchor, its augmentations — repeated indices, each view augmented independently by
the loop —, items of A's core, items of other cores) with the order matrix of Eqs. 1, 3, 4
(:mod:`labelfree.structure.orders`), plus random items in two views each.

Losses of a batch (§3.2-3.3):

- feature network F_γ: MS loss (Eq. 7) of every batch item against the memory bank and the batch
  itself, + the marginal variance constraint, + ``roc_weight`` · L_ROC (Eq. 5, 8);
- order network Φ_θ (:class:`labelfree.nets.order_net.OrderNet`): L_O (Eq. 9) +
  ``moc_weight`` · L_MOC (Eq. 6), i.e. L_ROP.

Cooperative training ("iterative and cooperative", no schedule given): each network is updated
only by its own loss, with the other network's output as a fixed constraint — L_ROC uses Φ's
orders detached, Φ and L_MOC see the embeddings detached. ``cooperative="joint"`` (default) makes
both updates in every step from the same forward pass (a simultaneous block-coordinate step:
neither loss has a gradient path into the other network, so this equals one F-step and one Φ-step
taken at the same point); ``"alternate"`` updates F on even steps and Φ on odd steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from labelfree.data.imageset import ImageSet
from labelfree.data.loader import inference_batch
from labelfree.losses.memory_bank import MemoryBank
from labelfree.losses.orders import (
    marginal_variance,
    moc_loss,
    ms_mining,
    multi_similarity,
    order_loss,
    roc_loss,
)
from labelfree.methods.base import Method
from labelfree.methods.encoder import Encoder
from labelfree.methods.registry import register_method
from labelfree.nets.order_net import OrderNet
from labelfree.options import AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT, Range
from labelfree.structure.orders import (
    AUG,
    OTHER_CORE,
    SAME_CORE,
    core_purity,
    kmeans_cores,
    order_matrix,
    sample_groups,
)
from labelfree.train.config import Runtime, Training
from labelfree.train.loop import EpochContext, Structure

#: 2 epochs, not the shared 10: on mnist5k's held-out digits (seed 0) MAP@R is 0.566 / 0.550 after
#: epochs 1-2 and 0.453 after 10 (bench_selection.py; tuned there); recipes keep the paper's.
ROUL_TRAINING = Training(epochs=2)


@dataclass
class ROULStructure(Structure):
    """ROUL's round structure (seed 003 §3.1, §3.3): ``core`` each item's core (−1: none),
    ``assign`` its k-means cluster, ``bank`` the memory bank (a module: N × d keys, updated by
    every batch),
    ``roles`` of a comparison set's items and their order matrix ``orders`` (Eq. 1)."""

    core: np.ndarray
    assign: np.ndarray
    bank: MemoryBank
    roles: np.ndarray
    orders: np.ndarray
    _core_t: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    _assign_t: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def on_device(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``core`` and ``assign`` as tensors on ``device`` (cached, never checkpointed); the
        bank moves there too."""
        if self._core_t is None or self._core_t.device != device:
            self._core_t = torch.as_tensor(self.core, device=device)
            self._assign_t = torch.as_tensor(self.assign, device=device)
            self.bank.to(device)
        return self._core_t, self._assign_t

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_core_t": None, "_assign_t": None}


@register_method
class ROUL(Method):
    """Relative orders from k-means cores, MS + memory bank, mutual ROC/MOC constraints."""

    name = "roul"
    option_ranges = {
        "clusters": NON_NEGATIVE,
        "core_fraction": POSITIVE,
        "core_min_share": UNIT,
        "kmeans_iters": AT_LEAST_1,
        "n_aug": AT_LEAST_1,
        "n_same": NON_NEGATIVE,
        "n_other": NON_NEGATIVE,
        "aug_vs_core": Range(0, 1),
        "random_fraction": UNIT,
        "lam_p": POSITIVE,
        "lam_n": POSITIVE,
        "var_weight": NON_NEGATIVE,
        "roc_weight": NON_NEGATIVE,
        "roc_alpha": POSITIVE,
        "moc_weight": NON_NEGATIVE,
        "moc_alpha": POSITIVE,
        "order_hidden": AT_LEAST_1,
        "rerank_m": AT_LEAST_1,
        "rerank_views": NON_NEGATIVE,
        "rerank_lambda": NON_NEGATIVE,
        "rerank_alpha": NON_NEGATIVE,
    }
    option_choices = {
        "roc_form": ("paper", "hinge"),
        "roc_orders": ("predicted", "target"),
        "cooperative": ("joint", "alternate"),
    }

    def __init__(
        self,
        *,
        clusters: int = 0,
        core_fraction: float = 1.0 / 3.0,
        core_min_share: float = 0.3,
        kmeans_iters: int = 25,
        n_aug: int = 2,
        n_same: int = 3,
        n_other: int = 3,
        aug_vs_core: int = 0,
        random_fraction: float = 0.5,
        lam_p: float = 2.0,
        lam_n: float = 40.0,
        ms_delta: float = 0.5,
        mining_eps: float = 0.1,
        var_weight: float = 1.0,
        roc_weight: float = 0.1,
        roc_alpha: float = 0.1,
        roc_form: str = "paper",
        roc_orders: str = "predicted",
        moc_weight: float = 1.0,
        moc_alpha: float = 0.1,
        order_hidden: int = 128,
        cooperative: str = "joint",
        rerank_m: int = 30,
        rerank_views: int = 2,
        rerank_lambda: float = 1.0,
        rerank_alpha: float = 1.0,
        encoder: Encoder = Encoder(),
        training: Training = ROUL_TRAINING,
        runtime: Runtime = Runtime(),
    ) -> None:
        """Args:
        clusters: k of the k-means structure step; 0 = one cluster per 60 training items (the
            paper's 100 clusters for CUB's 5,864 training images, ~59 each).
        core_fraction: core radius Δ as a fraction of the smallest centre distance (Eq. 2; ⅓).
        core_min_share: each core is topped up to this share of its cluster, nearest the centre
            first (0: Eq. 2 alone). Eq. 2 with Δ = ⅓ empties every core in high dimension
            (0 of 2,500 items on mnist5k HOG-LDA); the 30 % nearest are 98.7 % label-pure there.
        kmeans_iters: faiss k-means iterations.
        n_aug: augmentations A_i of each anchor in its comparison set (L; "a small set").
        n_same: items of the anchor's core per comparison set (the paper gives no number).
        n_other: items of other cores per comparison set (N = n_aug + n_same + n_other = 8).
        aug_vs_core: order of an augmentation of A against an item of A's core (the paper gives
            no rule; 0 = uncertain, 1 = the augmentation is closer).
        random_fraction: share of each batch filled with random training items in two views
            (their MS positive is the other view); the paper does not say how items outside
            the cores enter the feature loss — without them only core items would be trained.
        lam_p: λ_P of the MS loss (2, Eq. 7).
        lam_n: λ_N of the MS loss (40, Eq. 7).
        ms_delta: δ of the MS loss (0.5, Eq. 7).
        mining_eps: ε of the MS hard-pair mining (0.1, the MS paper); negative: no mining.
        var_weight: weight of the marginal variance constraint (not given in the paper; 1).
        roc_weight: weight of L_ROC in the feature loss (0.1, the paper's Fig. 7 optimum; 0 off).
        roc_alpha: α of L_ROC (0.1, Eq. 5).
        roc_form: ``paper`` (Eq. 5) or ``hinge`` (zero once distances agree with the orders).
        roc_orders: ``predicted`` (Φ's Ô, as in the paper) or ``target`` (the structure's O).
        moc_weight: weight of L_MOC in the order loss (1 = L_ROP = L_MOC + L_O; 0 off).
        moc_alpha: α of log_α in L_MOC (the paper reuses α = 0.1).
        order_hidden: hidden width of Φ_θ.
        cooperative: ``joint`` or ``alternate`` (see the module docstring).
        rerank_m: re-ranking depth M (top-M results re-ordered; the paper gives no value).
        rerank_views: L augmentations of the query added at rank 0 in re-ranking.
        rerank_lambda: λ of the re-ranking energy (Eq. 10; not given in the paper).
        rerank_alpha: α₁ of the re-ranking energy (Eq. 10; not given in the paper).
        """
        super().__init__(encoder=encoder, training=training, runtime=runtime)
        self.clusters, self.core_fraction = clusters, core_fraction
        self.core_min_share, self.kmeans_iters = core_min_share, kmeans_iters
        self.n_aug, self.n_same, self.n_other = n_aug, n_same, n_other
        self.aug_vs_core, self.random_fraction = aug_vs_core, random_fraction
        self.lam_p, self.lam_n, self.ms_delta, self.mining_eps = lam_p, lam_n, ms_delta, mining_eps
        self.var_weight = var_weight
        self.roc_weight, self.roc_alpha, self.roc_form = roc_weight, roc_alpha, roc_form
        self.roc_orders = roc_orders
        self.moc_weight, self.moc_alpha = moc_weight, moc_alpha
        self.order_hidden, self.cooperative = order_hidden, cooperative
        self.rerank_m, self.rerank_views = rerank_m, rerank_views
        self.rerank_lambda, self.rerank_alpha = rerank_lambda, rerank_alpha
        self.order_net: OrderNet | None = None
        self._step = 0

    # ---- hooks ------------------------------------------------------------------------------------
    def min_items(self) -> int:
        return max(2 * (self.clusters or 2), 8)

    def extra_module(self) -> nn.Module:
        if self.order_net is None:
            self.order_net = OrderNet(self.encoder.dim, hidden=self.order_hidden)
        return self.order_net

    def n_clusters(self, n: int) -> int:
        return self.clusters if self.clusters else max(2, min(n // 4, round(n / 60)))

    def structure(
        self, reps: np.ndarray, round_idx: int, ctx: EpochContext | None = None
    ) -> ROULStructure:
        """k-means cores on ``reps`` and a memory bank of the current embedding (§3.1, §3.3)."""
        k = self.n_clusters(len(reps))
        km = kmeans_cores(
            reps,
            k,
            self.core_fraction,
            self.kmeans_iters,
            seed=self.runtime.seed + round_idx,
            min_share=self.core_min_share,
        )
        bank = ctx.embedding() if ctx is not None else reps
        roles = np.array(
            [AUG] * self.n_aug + [SAME_CORE] * self.n_same + [OTHER_CORE] * self.n_other
        )
        return ROULStructure(
            core=km["core"],
            assign=km["assign"],
            bank=MemoryBank(torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))),
            roles=roles,
            orders=order_matrix(roles, self.aug_vs_core),
        )

    def batches(
        self, structure: ROULStructure, rng: np.random.Generator, ctx: EpochContext | None = None
    ) -> list[dict[str, Any]]:
        """≈ 3 N embedded items per epoch (as the Hadsell triplet baseline), in batches of groups
        (anchor + comparison set) and random two-view items."""
        n = len(structure.core)
        group = 1 + self.n_aug + self.n_same + self.n_other
        n_rand = 2 * int(round(self.training.batch_size * self.random_fraction / 2))
        n_groups = max(1, (self.training.batch_size - n_rand) // group)
        n_batches = max(1, math.ceil(3 * n / self.training.batch_size))
        groups, _ = sample_groups(
            structure.core, n_groups * n_batches, self.n_aug, self.n_same, self.n_other, rng
        )
        out = []
        for b in range(n_batches):
            g = groups[b * n_groups : (b + 1) * n_groups]
            r = np.repeat(rng.integers(0, n, size=n_rand // 2), 2)
            idx = np.concatenate([g.ravel(), r])
            out.append(
                {
                    "indices": idx,
                    "groups": np.arange(g.size).reshape(g.shape),
                    "n_group_items": g.size,
                }
            )
        return out

    # ---- losses -----------------------------------------------------------------------------------
    def feature_loss(
        self, emb: torch.Tensor, idx: torch.Tensor, structure: ROULStructure
    ) -> torch.Tensor:
        """MS loss against the memory bank + the batch (Eq. 7) + marginal variance, mean over items.

        Positives: the other views of the same item (in the batch and its bank entry) and items of
        the same core; negatives: items of other k-means clusters (same-cluster non-core items are
        neither: their relation is uncertain).
        """
        core, assign = structure.on_device(emb.device)
        bank = structure.bank.keys
        n = bank.shape[0]
        keys = torch.cat([emb, bank])
        sims = emb @ keys.T
        c_b, a_b = core[idx], assign[idx]
        key_idx = torch.cat([idx, torch.arange(n, device=emb.device)])
        key_core = torch.cat([c_b, core])
        key_assign = torch.cat([a_b, assign])
        same = idx[:, None] == key_idx[None, :]
        self_pair = torch.zeros_like(same)
        self_pair[:, : len(idx)] = torch.eye(len(idx), dtype=torch.bool, device=emb.device)
        pos = (same | ((c_b[:, None] == key_core[None, :]) & (c_b[:, None] >= 0))) & ~self_pair
        neg = a_b[:, None] != key_assign[None, :]
        kp, kn = ms_mining(sims, pos, neg, self.mining_eps if self.mining_eps >= 0 else None)
        out = multi_similarity(emb, keys, kp, kn, self.lam_p, self.lam_n, self.ms_delta)
        if self.var_weight:
            out = out + self.var_weight * marginal_variance(sims, kp, kn).mean()
        return out

    def batch_loss(
        self, emb: torch.Tensor, batch: dict[str, Any], structure: ROULStructure
    ) -> torch.Tensor:
        device = emb.device
        structure.on_device(device)
        idx = torch.as_tensor(batch["indices"], device=device)
        emb = F.normalize(emb, dim=1)
        step = self._step
        self._step += 1
        train_f = self.cooperative == "joint" or step % 2 == 0
        train_o = self.cooperative == "joint" or step % 2 == 1
        pos = torch.as_tensor(batch["groups"], device=device)
        ge = emb[pos]  # (G, 1 + N, d)
        anchor, items = ge[:, 0], ge[:, 1:]
        dist = (anchor[:, None, :] - items).norm(dim=-1)  # (G, N)
        target = torch.as_tensor(structure.orders, device=device, dtype=emb.dtype)
        target = target.expand(len(pos), -1, -1)
        phi = self.extra_module()
        # Start from a constant: on an order-network-only step (cooperative="alternate") the
        # feature network then gets no gradient at all (None, not 0), so AdamW leaves its
        # weights alone instead of moving them by momentum and weight decay.
        loss = torch.zeros((), device=device)
        if train_f:
            loss = loss + self.feature_loss(emb, idx, structure)
            if self.roc_weight:
                if self.roc_orders == "predicted":
                    with torch.no_grad():
                        o = phi(anchor.detach(), items.detach())
                else:
                    o = target
                loss = loss + self.roc_weight * roc_loss(dist, o, self.roc_alpha, self.roc_form)
        if train_o:
            pred = phi(anchor.detach(), items.detach())
            loss = loss + order_loss(pred, target)
            if self.moc_weight:
                loss = loss + self.moc_weight * moc_loss(dist.detach(), pred, self.moc_alpha)
        structure.bank.update(idx, emb)  # the newest view of each item
        return loss

    def fit(self, images: ImageSet, *args: Any, **kwargs: Any) -> ROUL:
        self._step = 0
        self.order_net = None  # a new fit trains a new order network, like the new feature net
        super().fit(images, *args, **kwargs)
        self.extra_module().eval()
        return self

    def structure_stats(self, structure: ROULStructure, labels: np.ndarray) -> dict[str, float]:
        """Core coverage and purity (:func:`labelfree.structure.orders.core_purity`)."""
        return core_purity(structure.core, labels)

    # ---- test time ----------------------------------------------------------------------------------
    @torch.no_grad()
    def augmented_views(self, images: ImageSet, n_views: int, seed: int = 0) -> np.ndarray:
        """(n_views, N, dim) embeddings of independently augmented copies of ``images``.

        The feature-head start has no image augmentation: its views are the plain embedding.
        """
        self._require_fitted()
        z = self.embed(images)
        if n_views == 0:
            return np.zeros((0, *z.shape), np.float32)
        if self.encoder.start == "feature-head" or self.encoder.augment <= 0:
            return np.repeat(z[None], n_views, axis=0)
        from labelfree.data.augment import Augment

        net = self.net_.eval()
        device = next(net.parameters()).device
        size = tuple(self.image_size_) if self.image_size_ else images.image_size
        flip = images.meta.get("hflip", True) if self.encoder.flip is None else self.encoder.flip
        aug = Augment(size, strength=self.encoder.augment, flip=flip).to(device)
        torch.manual_seed(seed)
        out = np.zeros((n_views, *z.shape), np.float32)
        step = inference_batch(size)
        for s in range(0, len(images), step):
            x = images.tensor(slice(s, s + step)).to(device)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for v in range(n_views):
                out[v, s : s + len(x)] = net(aug(x)).float().cpu().numpy()
        return out

    @torch.no_grad()
    def predict_orders(self, anchor: np.ndarray, items: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Φ_θ's orders Ô (Q, N, N) for anchors (Q, d) and their comparison items (Q, N, d)."""
        phi = self.extra_module().eval()
        device = next(phi.parameters()).device
        out = []
        for s in range(0, len(anchor), chunk):
            a = torch.from_numpy(np.ascontiguousarray(anchor[s : s + chunk])).to(device)
            c = torch.from_numpy(np.ascontiguousarray(items[s : s + chunk])).to(device)
            out.append(phi(a, c).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, items.shape[1], items.shape[1]))
