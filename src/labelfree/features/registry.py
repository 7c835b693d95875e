"""Initial representations g(x) by name: the registry filled by the extractor modules.

Kept apart from :mod:`labelfree.features.base` (the extractor protocol, the cache), which the
extractor modules import, so that importing them here makes no import circle.
"""

from __future__ import annotations

from typing import Any

from labelfree.data.imageset import DataError
from labelfree.features import backbone, hog, pixels  # noqa: F401  (register the extractors)
from labelfree.features.base import _REGISTRY, FeatureExtractor


def available_extractors() -> list[str]:
    return sorted(_REGISTRY)


def get_extractor(name: str, **config: Any) -> FeatureExtractor:
    """Build an extractor by registry name (``pixels``, ``hog``, ``hog-lda``, ``backbone``)."""
    if name not in _REGISTRY:
        raise DataError(
            f"unknown feature extractor {name!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name](**config)


def from_dict(d: dict[str, Any]) -> FeatureExtractor:
    """Rebuild a fitted extractor from :meth:`FeatureExtractor.to_dict`."""
    ext = get_extractor(d["name"], **d.get("config", {}))
    ext.load_state_dict(d.get("state", {}))
    return ext
