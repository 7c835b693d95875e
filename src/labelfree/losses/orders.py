"""ROUL's losses (seed 003 §3.2-3.3): MS against a memory bank, marginal variance, L_ROC, L_MOC, L_O.

Shapes: a batch holds G groups (an anchor A and N comparison items C_1..C_N); ``dist`` is the
``(G, N)`` Euclidean distance d[F(A), F(C_n)], ``orders`` the ``(G, N, N)`` order matrices O_A and
Δ(n, m) = d(A, C_n) − d(A, C_m).

Reductions the paper leaves open: Eqs. 5 and 6 sum over anchors; here they are *averaged* over the
batch's anchors (a sum would tie the effective weight of L_ROC, 0.1 in the paper, to the batch
size) and summed over (n, m) as written.
"""

from __future__ import annotations

import math

import torch


def ms_mining(
    sims: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, eps: float | None = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The multi-similarity pair mining (Wang et al. 2019 §4, used by seed 003 Eq. 7): of an
    anchor's pairs keep a negative with s > min_pos − ε and a positive with s < max_neg + ε.

    ``sims`` (B, K) similarities of the batch to K keys, ``pos`` / ``neg`` (B, K) masks. Ours, not
    pytorch-metric-learning's ``MultiSimilarityMiner``: that miner derives pairs from labels,
    while ROUL's relation has three states (positive: same item or same core; negative: another
    k-means cluster; neither: a non-core item of the same cluster), which no labelling gives.
    ``eps`` None keeps every pair. Returns the kept ``(pos, neg)`` masks.
    """
    pos, neg = pos.bool(), neg.bool()
    if eps is None:
        return pos, neg
    s = sims.detach()
    inf = torch.tensor(float("inf"), device=s.device, dtype=s.dtype)
    min_pos = torch.where(pos, s, inf).amin(dim=1, keepdim=True)
    max_neg = torch.where(neg, s, -inf).amax(dim=1, keepdim=True)
    # Without negatives every positive is kept, and likewise.
    max_neg = torch.where(torch.isinf(max_neg), inf, max_neg)
    min_pos = torch.where(torch.isinf(min_pos), -inf, min_pos)
    return pos & (s < max_neg + eps), neg & (s > min_pos - eps)


def multi_similarity(
    emb: torch.Tensor,
    keys: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    lam_p: float = 2.0,
    lam_n: float = 40.0,
    delta: float = 0.5,
) -> torch.Tensor:
    """The multi-similarity loss of seed 003 Eq. 7 (λ_P = 2, λ_N = 40, δ = 0.5), averaged over
    the B rows of ``emb``, with the pairs given as (B, K) masks into the reference embeddings
    ``keys`` (the memory bank and the batch itself). A batch with at most one positive and
    one negative pair in all gives 0 (pytorch-metric-learning's rule for a single pair); ROUL's
    batches hold thousands.

    pytorch-metric-learning's ``MultiSimilarityLoss`` computes it, fed the pairs as an
    ``indices_tuple`` and the keys as ``ref_emb`` (cosine similarity; a row without pairs
    contributes 0).
    """
    from pytorch_metric_learning.losses import MultiSimilarityLoss

    a1, p = torch.nonzero(pos, as_tuple=True)
    a2, n = torch.nonzero(neg, as_tuple=True)
    loss_fn = MultiSimilarityLoss(alpha=lam_p, beta=lam_n, base=delta)
    return loss_fn(emb, indices_tuple=(a1, p, a2, n), ref_emb=keys)


def marginal_variance(sims: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """The marginal variance constraint (seed 003 §3.3, its ref. [10], CBML), per anchor.

    The paper names the constraint without a formula. Our reading: the variance of an anchor's
    positive similarities plus the variance of its (mined) negative similarities — tightening
    each distribution around its mean so the margin between them is uniform across pairs. An
    anchor with fewer than 2 pairs of a kind contributes 0 for that kind. Returns (B,).
    """

    def var(mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(sims.dtype)
        cnt = m.sum(1)
        mean = (sims * m).sum(1) / cnt.clamp(min=1)
        v = (((sims - mean[:, None]) ** 2) * m).sum(1) / cnt.clamp(min=1)
        return torch.where(cnt >= 2, v, torch.zeros_like(v))

    return var(pos.bool()) + var(neg.bool())


def order_deltas(dist: torch.Tensor) -> torch.Tensor:
    """Δ(n, m) = d(A, C_n) − d(A, C_m) for (G, N) distances → (G, N, N)."""
    return dist[:, :, None] - dist[:, None, :]


def roc_loss(
    dist: torch.Tensor, orders: torch.Tensor, alpha: float = 0.1, form: str = "paper"
) -> torch.Tensor:
    """Relative order consistency, seed 003 Eq. 5: Σ_{n,m} σ[O_A(n,m)] e^{αΔ(n,m)}, mean over A.

    ``form="paper"`` is Eq. 5 as written; e^{αΔ} > 0, so it is never zero while O has a positive
    entry, only smaller when the distances agree (Δ < 0). ``form="hinge"`` uses
    σ[O] · max(e^{αΔ} − 1, 0) instead: the same gradient as Eq. 5 on violated pairs (Δ > 0) and
    exactly zero once the distances agree with the orders.
    """
    w = torch.relu(orders.to(dist.dtype))
    e = torch.exp(alpha * order_deltas(dist))
    if form == "hinge":
        e = torch.relu(e - 1.0)
    elif form != "paper":
        raise ValueError(f"unknown roc form {form!r}; choose 'paper' or 'hinge'")
    return (w * e).sum(dim=(1, 2)).mean()


def moc_loss(dist: torch.Tensor, orders: torch.Tensor, alpha: float = 0.1) -> torch.Tensor:
    """Metric order consistency, seed 003 Eq. 6: Σ_{n,m} [1 − O(n,m)] w(Δ) σ[−Δ(n,m)], mean over A.

    The weight is the paper's log_α[1 − Δ] read as its magnitude ln(1 − Δ) / ln(1/α): for
    α = 0.1 < 1 the literal log_α is *negative* where Δ < 0 (1 − Δ > 1), which would reward
    predicting the wrong order; the text says the weight should grow, sub-linearly, with the
    distance gap. Only Δ < 0 contributes (σ[−Δ]); 1 − Δ is evaluated as 1 + σ[−Δ] so no log of a
    non-positive number (Δ ≥ 1) is ever formed. ``orders`` are the predicted Ô (the loss trains
    the order network); ``dist`` is normally detached.
    """
    if alpha <= 0 or alpha == 1:
        raise ValueError("alpha must be positive and ≠ 1")
    neg_delta = torch.relu(-order_deltas(dist))
    weight = torch.log1p(neg_delta) / abs(math.log(alpha))
    return ((1.0 - orders) * weight * neg_delta).sum(dim=(1, 2)).mean()


def order_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative order matrix prediction loss, seed 003 Eq. 9: mean (Ô − O)² over A, n, m."""
    return ((pred - target.to(pred.dtype)) ** 2).mean()
