"""Evaluation of an image-level method on labelled held-out images: the learned embedding beside
the initial features g(x), with the retrieval and clustering metrics of
:mod:`labelfree.evaluate.metrics`."""

from __future__ import annotations

import json
from typing import Any

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.metrics import evaluate_embeddings, recall_ks_for
from labelfree.evaluate.results import RETRIEVAL_COLUMNS, RETRIEVAL_SUMMARY, Metrics
from labelfree.features.base import compute_features
from labelfree.features.registry import get_extractor
from labelfree.utils import kill_point_for_tests

#: The initial representations scored beside every embedding.
INITIAL_FEATURES = ("pixels", "hog", "hog-lda")


def initial_extractor(method: Any, name: str, fit_on: ImageSet) -> Any:
    """The extractor of initial representation ``name`` to score beside ``method``: its own
    fitted g(x), or one fitted (without labels) on ``fit_on``. ``backbone`` only as the
    method's own g(x): a built-in backbone here would be random."""
    if name == method.encoder.features:
        return method.extractor_
    if name == "backbone":
        raise DataError(
            "--features backbone: only a model trained with -o features=backbone has a "
            "(pretrained) backbone g(x) to score; choose from pixels, hog, hog-lda"
        )
    return get_extractor(name).fit(fit_on)


def evaluate_retrieval(
    method: Any,
    eval_set: ImageSet,
    train: ImageSet | None = None,
    features: tuple[str, ...] = INITIAL_FEATURES,
    seed: int = 0,
) -> Metrics:
    """Metrics of each initial feature and of ``method``'s embedding on ``eval_set``.

    The method's own g(x) uses the extractor fitted at training time; the other features are
    fitted (without labels) on ``train``, or on ``eval_set`` itself when ``train`` is None.
    ``backbone`` is scored only as the method's own g(x): a built-in backbone would be random.
    The evaluation embeddings are kept in ``arrays["embeddings"]``, every scored representation
    in ``arrays["vectors"]`` (for re-ranking).
    """
    if eval_set.labels is None:
        raise DataError(f"{eval_set.name}: evaluation needs labels (class sub-folders or a list)")
    ks = recall_ks_for(len(eval_set), eval_set.name)
    reps: dict[str, dict[str, float]] = {}
    vectors: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for name in features:
        kill_point_for_tests("evaluate")
        ext = initial_extractor(method, name, train if train is not None else eval_set)
        g = vectors[name] = compute_features(ext, eval_set, cache=method.encoder.cache)
        res = evaluate_embeddings(g, eval_set.labels, ks=ks, seed=seed)
        settings = res.pop("nmi_settings", settings)
        reps[name] = res
    emb = vectors["embedding"] = method.embed(eval_set)
    res = evaluate_embeddings(emb, eval_set.labels, ks=ks, seed=seed)
    settings = res.pop("nmi_settings", settings)
    reps["embedding"] = res
    return Metrics(
        reps,
        RETRIEVAL_COLUMNS,
        higher_is_better=True,
        summary=RETRIEVAL_SUMMARY,
        run={"nmi_kmeans": settings},
        arrays={"embeddings": emb, "vectors": vectors},
        heading="Metrics: initial features g(x) beside the learned embedding",
        note="Retrieval is leave-one-out by cosine similarity over the evaluation set. NMI: "
        f"k-means with {json.dumps(settings)}. Best value per column in bold.",
    )
