"""A classifier head trained with the network during ``fit`` and dropped after it: the surrogate
classes of Exemplar-CNN and the cluster ids of DeepCluster exist only for training, and the
model is the embedding network alone, like every method's."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from labelfree.data.imageset import ImageSet


class TransientHead:
    """Mixin for a :class:`~labelfree.methods.base.Method`: ``self._head``, a linear layer from
    the embedding to ``head_classes(n_items)`` outputs — a method the subclass defines: the
    head's classes for a collection of ``n_items`` images — is the loop's extra module during
    ``fit``."""

    _head: nn.Linear | None = None

    def fit(self, images: ImageSet, *args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng():  # the same seed, the same head: runs repeat and resume
            torch.manual_seed(self.runtime.seed)  # type: ignore[attr-defined]
            classes = self.head_classes(len(images))  # type: ignore[attr-defined]
            self._head = nn.Linear(self.encoder.dim, classes)  # type: ignore[attr-defined]
        try:
            super().fit(images, *args, **kwargs)  # type: ignore[misc]
        finally:
            self._head = None
        return self

    def extra_module(self) -> nn.Module | None:
        return self._head
