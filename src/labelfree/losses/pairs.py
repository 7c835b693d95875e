"""Pair and tuple losses used by the image-level methods.

The triplet loss is pytorch-metric-learning's; the contrastive loss is written here because its
``ContrastiveLoss`` uses un-squared distances, while Hadsell et al. (2006) and MoM (seed 002,
§3.4 / METHODS.md §1 step 6) use the squared form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.reducers import MeanReducer


def contrastive_loss(
    emb: torch.Tensor,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    margin: float = 0.7,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hadsell contrastive loss on (anchor, positive, negative) index tuples into ``emb``.

    Each tuple contributes ``‖z_a − z_p‖² + [m − ‖z_a − z_n‖]_+²`` (seed 002 §3.4, m = 0.7),
    optionally multiplied by a per-tuple weight; the result is the mean over tuples.
    """
    za = emb[anchors]
    d_pos = (za - emb[positives]).pow(2).sum(1)
    d_neg = (za - emb[negatives]).pow(2).sum(1).clamp_min(1e-12).sqrt()
    per = d_pos + F.relu(margin - d_neg).pow(2)
    if weights is not None:
        per = per * weights
    return per.mean()


def triplet_loss(
    emb: torch.Tensor,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    margin: float = 0.5,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triplet loss ``[m + ‖z_a − z_p‖² − ‖z_a − z_n‖²]_+`` averaged over all given tuples.

    Squared distances inside the hinge, as in the MoM authors' code (METHODS.md §1 step 6).
    Unweighted, this is pytorch-metric-learning's TripletMarginLoss with squared L2 distance
    and a plain mean; the weighted variant multiplies each tuple's hinge before the mean.
    """
    if weights is None:
        loss_fn = TripletMarginLoss(
            margin=margin, distance=LpDistance(power=2), reducer=MeanReducer()
        )
        return loss_fn(emb, None, (anchors, positives, negatives))
    za = emb[anchors]
    d_pos = (za - emb[positives]).pow(2).sum(1)
    d_neg = (za - emb[negatives]).pow(2).sum(1)
    return (F.relu(margin + d_pos - d_neg) * weights).mean()


TUPLE_LOSSES = {"triplet": 0.5, "contrastive": 0.7}  # name -> default margin (seed 002 §4.3)


def check_tuple_loss(loss: str) -> None:
    if loss not in TUPLE_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(TUPLE_LOSSES)}")


def tuple_loss(
    emb: torch.Tensor, batch: dict, loss: str = "triplet", margin: float | None = None
) -> torch.Tensor:
    """The triplet or contrastive loss of a batch from
    :func:`labelfree.structure.tuples.tuple_batches` (positions ``a``, ``p``, ``n`` and
    optional weights ``w``); ``margin=None`` takes the loss's default (0.5 / 0.7)."""
    a, p, n = (torch.as_tensor(batch[k], device=emb.device) for k in ("a", "p", "n"))
    w = batch.get("w")
    w = None if w is None else torch.as_tensor(w, device=emb.device, dtype=emb.dtype)
    m = TUPLE_LOSSES[loss] if margin is None else margin
    fn = triplet_loss if loss == "triplet" else contrastive_loss
    return fn(emb, a, p, n, margin=m, weights=w)


def info_nce(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """InfoNCE: each student row must pick its own teacher row among the batch's rows.

    ``student`` and ``teacher`` are L2-normalised ``(B, D)``; logits are cosine / temperature.
    Used to distil g(x) into a CNN (METHODS.md §0, temperature 0.1).
    """
    logits = student @ teacher.t() / temperature
    target = torch.arange(len(student), device=student.device)
    return F.cross_entropy(logits, target)
