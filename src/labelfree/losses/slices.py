"""The losses of Divide & Conquer's learners (seed 001 Ch.2, Eq. 2.1; METHODS.md §5), each on an
L2-normalised slice of the embedding: the margin loss (Wu et al. 2017) with β fixed, the triplet
loss, and ProxyNCA — all from pytorch-metric-learning — on distance-weighted or all triplets."""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

#: ProxyNCA's softmax scale on squared distances of unit vectors: 9, i.e. embeddings and proxies
#: both scaled to norm 3, the fixed scaling of the public Proxy-NCA implementations. Our choice;
#: pytorch-metric-learning's default 1 leaves the softmax over distances in [0, 4] near uniform.
PROXY_SCALE = 9.0


def proxy_nca(num_classes: int, dim: int) -> pml_losses.ProxyNCALoss:
    """A ProxyNCA loss with ``num_classes`` learnable proxies of ``dim`` (a module: its proxies
    train with the network)."""
    return pml_losses.ProxyNCALoss(num_classes, dim, softmax_scale=PROXY_SCALE)


def slice_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    loss: str,
    margin: float,
    beta: float,
    sampler: str,
    proxies: pml_losses.ProxyNCALoss | None = None,
) -> torch.Tensor:
    """``loss`` on L2-normalised ``z``: ``margin`` (β fixed) or ``triplet`` on distance-weighted
    triplets (``sampler="distance"``) or all triplets of the batch (``"all"``), or ``proxynca``
    with ``proxies`` (no sampling: every item against every proxy)."""
    if loss == "proxynca":
        if proxies is None:
            raise ValueError("loss='proxynca' needs its proxies")
        return proxies(z, labels)
    tuples = None
    if sampler == "distance":
        tuples = pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(z, labels)
        if len(tuples[0]) == 0:
            return z.sum() * 0.0
    if loss == "margin":
        fn = pml_losses.MarginLoss(margin=margin, nu=0.0, beta=beta, learn_beta=False)
    else:
        fn = pml_losses.TripletMarginLoss(margin=margin)
    return fn(z, labels, tuples)
