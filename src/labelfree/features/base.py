"""Initial representations g(x): the interface, the registry and the on-disk cache.

An extractor is fitted on the *unlabeled training collection* (HOG-LDA estimates its background
statistics there) and then transforms any collection. Its settings and its fitted state are
part of the cache key, so a second run with the same data and settings reads the features from
disk instead of recomputing them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from labelfree.data.imageset import ImageSet
from labelfree.graph.nn import check_matrix
from labelfree.utils import atomic_save_npy, cache_dir, kill_point_for_tests


class FeatureExtractor:
    """Base class of every g(x).

    Subclasses set ``name``, store their settings as attributes listed by :meth:`config`, and
    override :meth:`_transform` (and :meth:`fit` / the state methods when they are fitted).
    """

    name: ClassVar[str] = ""

    def config(self) -> dict[str, Any]:
        """JSON-able settings: the extractor is rebuilt from ``{"name": ..., **config()}``."""
        return {}

    def fit(self, images: ImageSet) -> FeatureExtractor:
        """Estimate any state from the unlabeled collection. Stateless extractors do nothing."""
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Fitted state as numpy arrays (empty when stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"{self.name} has no state to load")

    def _transform(self, images: ImageSet) -> np.ndarray:
        raise NotImplementedError  # abstractmethod: every concrete extractor overrides it

    def transform(self, images: ImageSet) -> np.ndarray:
        """``(N, D)`` float32 features. Raises :class:`DataError` on NaN/inf output."""
        feats = np.ascontiguousarray(self._transform(images), dtype=np.float32)
        check_finite(feats, f"{self.name} features of {images.name}")
        return feats

    def key(self) -> str:
        """Hash of settings and fitted state: part of the cache key."""
        h = hashlib.blake2b(digest_size=12)
        h.update(json.dumps({"name": self.name, **self.config()}, sort_keys=True).encode())
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v).tobytes())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Settings and state, enough to rebuild the fitted extractor (see :func:`from_dict`)."""
        return {"name": self.name, "config": self.config(), "state": self.state_dict()}


def check_finite(x: np.ndarray, what: str) -> None:
    """Raise a :class:`DataError` naming ``what`` when ``x`` holds NaN or inf."""
    x = np.asarray(x)
    check_matrix(x.reshape(len(x), -1) if x.ndim > 1 else x, what)


_REGISTRY: dict[str, type[FeatureExtractor]] = {}


def register(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    """Class decorator adding an extractor to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def compute_features(
    extractor: FeatureExtractor, images: ImageSet, cache: bool | Path = True
) -> np.ndarray:
    """``extractor.transform(images)``, read from / written to the on-disk cache.

    The cache key combines the images' content hash and the extractor's settings and fitted
    state. Files are written atomically (temporary file, then rename).
    """
    if cache is False:
        return extractor.transform(images)
    root = (cache_dir() if cache is True else Path(cache)) / "features"
    path = root / f"{extractor.name}-{extractor.key()}-{images.fingerprint()}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed
    feats = extractor.transform(images)
    kill_point_for_tests("features")  # test hook: a kill before the cache file is written
    atomic_save_npy(path, feats)
    return feats
