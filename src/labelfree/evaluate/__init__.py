"""Evaluation on held-out classes: retrieval (R@K, MAP@R, R-precision, mAP) and NMI."""

from labelfree.evaluate.metrics import (
    cluster_nmi,
    evaluate_embeddings,
    l2_normalize,
    recall_ks_for,
    retrieval_metrics,
)

__all__ = [
    "cluster_nmi",
    "evaluate_embeddings",
    "l2_normalize",
    "recall_ks_for",
    "retrieval_metrics",
]
