"""Index building and querying: cosine-similarity search over embeddings (faiss)."""

from labelfree.search.index import EmbeddingIndex

__all__ = ["EmbeddingIndex"]
