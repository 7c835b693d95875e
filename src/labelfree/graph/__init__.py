"""Nearest-neighbour graphs: kNN search, mutual kNN graphs, manifold similarity, random walks."""

from .knn import knn, l2_normalize
from .manifold import (
    block_cg,
    connected_components,
    diffusion_rerank,
    graph_modes,
    knn_graph,
    largest_component,
    local_cluster_sizes,
    manifold_similarity,
    mutual_knn_graph,
    normalize_graph,
    stationary_distribution,
)

__all__ = [
    "block_cg",
    "connected_components",
    "diffusion_rerank",
    "graph_modes",
    "knn",
    "knn_graph",
    "l2_normalize",
    "largest_component",
    "local_cluster_sizes",
    "manifold_similarity",
    "mutual_knn_graph",
    "normalize_graph",
    "stationary_distribution",
]
