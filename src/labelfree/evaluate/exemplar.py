"""The exemplar ROC-AUC protocol of Olympic Sports (seed 001 §3.3.1, seed 000 §4.1.1).

CliqueCNN and Posets evaluate fine-grained posture retrieval on query *exemplars*: each query
frame has a few frames labelled as positives (similar posture) and negatives (dissimilar
posture). Per query, the labelled frames are ranked by their similarity to the query and a ROC
curve is drawn; the curves of all queries are averaged at 101 false-positive rates
(0, 0.01, …, 1) and the area under the mean curve is reported (trapezoid rule). Anchors:
HOG-LDA 0.62, CliqueCNN 0.83 (+LTP 0.84), Posets 0.85 on Olympic Sports (METHODS.md §2).

Details, stated once:

* **Similarity** is the cosine of the embeddings (``normalize=True``, as elsewhere in
  :mod:`labelfree.evaluate`), or a precomputed similarity row per query. (The authors' script
  used 2 − correlation distance, i.e. the cosine of mean-centred vectors; rankings differ only
  by that centring.)
* **Per-query ROC** is scikit-learn's ``roc_curve`` on the labelled frames (computed directly) (ties between scores
  form diagonal segments); its exact area equals ``roc_auc_score`` and is returned per query.
* **Interpolation** at the 101 FPR points is linear between the curve's vertices. Where the
  curve rises vertically at a grid FPR (a positive ranked between two negatives lands exactly
  on a grid value, e.g. with 10 or 20 negatives, and always at FPR 0 when the top-ranked frame
  is a positive), the value taken is the *upper* end of the jump: the best TPR reachable at that
  FPR. This is what ``scipy.interpolate.interp1d(fpr, tpr)`` returns on ``roc_curve``'s output
  (scipy 1.17), as in the authors' evaluation script (``calculate_roc_auc.py`` of the CliqueCNN
  release); a perfect ranking scores exactly 1. The area of one query's interpolated curve
  differs from its exact AUC by at most 1/(2·100) = 0.005: within one grid interval the curve
  rises by some Δ, and the trapezoid on the interval's ends differs from the true area there by
  at most 0.01·Δ/2 (a vertical jump at a grid point adds exactly that; a vertex between grid
  points can cut either way). The area of the mean curve equals the mean of the per-query
  interpolated areas (both are linear in the curves).
* **Mirror.** "Best of image and mirror": each query is also run as its horizontally mirrored
  image (``mirror=``: embeddings of the mirrored frames), because an athlete may face either
  way. Three modes:

  - ``"best"`` (default when a mirror is given; METHODS.md §2's wording): per query, the curve
    of whichever of image and mirror has the larger exact AUC.
  - ``"annotated"``: the authors' script — each labelled frame carries a flip flag (the
    annotation says the frame matches the *mirrored* query) and is scored with the mirrored
    query's similarity when flagged, with the plain query's otherwise.
  - ``"image"``: no mirror.

**Exemplar generation** for a set with pose ground truth: :func:`make_exemplars`
(:mod:`labelfree.evaluate.exemplar_sets`). The ROC helpers (:data:`FPR_GRID`,
:func:`interpolate_roc`) live in :mod:`labelfree.evaluate.exemplar_roc`.
"""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError, ImageSet
from labelfree.data.sequences import Exemplars, check_sequences
from labelfree.evaluate.exemplar_roc import FPR_GRID, _roc, interpolate_roc
from labelfree.evaluate.exemplar_sets import make_exemplars, pose_distance
from labelfree.graph.knn import l2_normalize

__all__ = [
    "FPR_GRID",
    "MIRROR_MODES",
    "Exemplars",
    "evaluate_exemplars",
    "exemplar_protocol",
    "exemplar_roc_auc",
    "interpolate_roc",
    "make_exemplars",
    "pose_distance",
]

MIRROR_MODES = ("best", "annotated", "image")


def _similarity_rows(
    x: np.ndarray, queries: np.ndarray, similarity: bool, normalize: bool, what: str
) -> np.ndarray:
    if similarity:
        sim = np.asarray(x, dtype=np.float64)
        if sim.ndim != 2 or len(sim) != len(queries):
            raise DataError(f"{what}: a similarity input must be (Q, N) rows, got {sim.shape}")
        return sim
    emb = np.asarray(x, dtype=np.float32)
    if emb.ndim != 2:
        raise DataError(f"{what}: embeddings must be (N, d), got {emb.shape}")
    if normalize:
        emb = l2_normalize(emb)
    return (emb[queries] @ emb.T).astype(np.float64)


def exemplar_roc_auc(
    x: np.ndarray,
    queries: np.ndarray,
    positives: list[np.ndarray],
    negatives: list[np.ndarray],
    mirror: np.ndarray | None = None,
    *,
    mode: str | None = None,
    flips: list[np.ndarray] | None = None,
    similarity: bool = False,
    normalize: bool = True,
    grid: np.ndarray = FPR_GRID,
) -> dict[str, object]:
    """Exemplar ROC-AUC: area of the mean ROC curve over queries (module docstring).

    Args:
        x: ``(N, d)`` embeddings of all items, or with ``similarity=True`` a ``(Q, N)`` array
            whose row q is the similarity of query q to every item.
        queries: ``(Q,)`` query item indices.
        positives, negatives: per query, the labelled item indices.
        mirror: the same for the horizontally mirrored images: ``(N, d)`` embeddings of every
            item's mirror (only the query rows are read; the query's mirror is compared with the
            *unmirrored* labelled frames), or ``(Q, N)`` similarity rows of the mirrored queries.
        mode: ``"best"`` | ``"annotated"`` | ``"image"``; default ``"best"`` with a mirror and
            ``"image"`` without.
        flips: for ``"annotated"``: per query, a bool per labelled frame (positives first, then
            negatives) — True scores the frame against the mirrored query.
        normalize: cosine similarity (L2-normalise the embeddings first).
        grid: the FPRs of the mean curve (default 101 points in [0, 1]).

    Returns:
        ``roc_auc`` (area of the mean curve: the protocol's figure), ``mean_auc`` (mean exact
        per-query AUC on the chosen side), ``per_query_auc`` ``(Q,)``, ``mirror_used`` ``(Q,)``
        bool (in ``"annotated"`` mode: whether any frame used the mirror), ``fpr`` (the grid),
        ``tpr`` (the mean curve) and ``n_queries``.
    """
    queries = np.asarray(queries, dtype=np.int64)
    n_q = len(queries)
    if n_q == 0:
        raise DataError("exemplar ROC-AUC needs at least one query")
    if len(positives) != n_q or len(negatives) != n_q:
        raise DataError(
            f"{n_q} queries but {len(positives)} positive and {len(negatives)} negative lists"
        )
    if mode is None:
        mode = "image" if mirror is None else "best"
    if mode not in MIRROR_MODES:
        raise DataError(f"unknown mirror mode {mode!r}; choose one of {MIRROR_MODES}")
    if mode != "image" and mirror is None:
        raise DataError(f"mirror mode {mode!r} needs the mirrored embeddings / similarities")
    if mode == "annotated" and (flips is None or len(flips) != n_q):
        raise DataError("mirror mode 'annotated' needs one flip-flag array per query")
    sim = _similarity_rows(x, queries, similarity, normalize, "x")
    if mode != "image":
        if similarity:
            sim_m = _similarity_rows(mirror, queries, True, normalize, "mirror")
        else:
            m = np.asarray(mirror, dtype=np.float32)
            emb = np.asarray(x, dtype=np.float32)
            if m.shape != emb.shape:
                raise DataError(
                    f"mirror embeddings {m.shape} must match the embeddings {emb.shape}"
                )
            if normalize:
                m, emb = l2_normalize(m), l2_normalize(emb)
            sim_m = (m[queries] @ emb.T).astype(np.float64)
    curves = np.empty((n_q, len(grid)))
    aucs = np.empty(n_q)
    used = np.zeros(n_q, dtype=bool)
    for q in range(n_q):
        pos = np.asarray(positives[q], dtype=np.int64)
        neg = np.asarray(negatives[q], dtype=np.int64)
        if len(pos) == 0 or len(neg) == 0:
            raise DataError(f"query {int(queries[q])} needs at least one positive and negative")
        items = np.concatenate([pos, neg])
        is_pos = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
        if mode == "annotated":
            f = np.asarray(flips[q], dtype=bool)
            if f.shape != items.shape:
                raise DataError(f"query {q}: {f.shape[0]} flip flags for {len(items)} frames")
            scores = np.where(f, sim_m[q, items], sim[q, items])
            used[q] = bool(f.any())
        else:
            scores = sim[q, items]
        fpr, tpr, auc = _roc(scores, is_pos)
        if mode == "best":
            fpr_m, tpr_m, auc_m = _roc(sim_m[q, items], is_pos)
            if auc_m > auc:
                fpr, tpr, auc, used[q] = fpr_m, tpr_m, auc_m, True
        curves[q] = interpolate_roc(fpr, tpr, grid)
        aucs[q] = auc
    mean_curve = curves.mean(axis=0)
    return {
        "roc_auc": float(np.trapezoid(mean_curve, grid)),
        "mean_auc": float(aucs.mean()),
        "per_query_auc": aucs,
        "mirror_used": used,
        "fpr": np.asarray(grid, dtype=np.float64),
        "tpr": mean_curve,
        "n_queries": n_q,
    }


def evaluate_exemplars(
    embeddings: np.ndarray,
    exemplars: Exemplars,
    mirror: np.ndarray | None = None,
    mode: str | None = None,
    normalize: bool = True,
) -> dict[str, float]:
    """Scalar summary of :func:`exemplar_roc_auc` for an :class:`Exemplars` set.

    With ``mode="annotated"`` the flip flags of ``exemplars`` are used. Returns ``roc_auc``,
    ``mean_auc``, ``mirror_rate`` (fraction of queries that used the mirror) and ``n_queries``.
    """
    flips = None
    if mode == "annotated":
        flips = [
            np.concatenate([p, n])
            for p, n in zip(exemplars.pos_flip, exemplars.neg_flip, strict=True)
        ]
    res = exemplar_roc_auc(
        embeddings,
        exemplars.queries,
        exemplars.positives,
        exemplars.negatives,
        mirror,
        mode=mode,
        flips=flips,
        normalize=normalize,
    )
    return {
        "roc_auc": float(res["roc_auc"]),
        "mean_auc": float(res["mean_auc"]),
        "mirror_rate": float(np.mean(res["mirror_used"])),
        "n_queries": float(res["n_queries"]),
    }


def exemplar_protocol(
    embeddings: np.ndarray,
    images: ImageSet,
    mirror: np.ndarray | None = None,
    ltp: int = 0,
    exemplars: Exemplars | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The whole protocol on a frame-sequence set with pose ground truth — the CLI entry point.

    Uses ``exemplars`` if given, else ``images.meta["exemplars"]`` (annotated data such as
    :func:`labelfree.data.sequences.load_olympic_sports`), else draws them from the pose ground
    truth in ``images.meta`` (``keypoints``, ``video``, ``frame``; ``labels`` as the per-sport
    classes) with :func:`make_exemplars` defaults and ``seed``; optionally applies local temporal pooling with radius ``ltp`` to the embeddings
    (and the mirrored ones; :func:`labelfree.structure.temporal.ltp_stack`, clamp boundary), and
    scores every mirror mode.

    Args:
        embeddings: ``(N, d)`` embeddings of ``images``.
        images: the evaluated collection (e.g. ``synthetic-poses:test``).
        mirror: ``(N, d)`` embeddings of the horizontally mirrored images
            (:func:`labelfree.data.sequences.mirror_images`); without it only ``image`` mode.
        ltp: temporal radius p (0: no pooling; the paper's value is 3).

    Returns:
        ``roc_auc`` (mirror mode ``annotated``, the authors' script; ``image`` without a
        mirror), ``roc_auc_best`` / ``roc_auc_image`` (the other modes), ``mean_auc``,
        ``mirror_rate`` and ``n_queries``.
    """
    from labelfree.structure.temporal import ltp_stack

    video, frame = check_sequences(images)
    if exemplars is None and isinstance(images.meta.get("exemplars"), Exemplars):
        exemplars = images.meta["exemplars"]  # annotated data (load_olympic_sports)
    if exemplars is None:
        if "keypoints" not in images.meta:
            raise DataError(
                f"{images.name}: the exemplar protocol needs pose ground truth "
                "(meta['keypoints']) or explicit exemplars"
            )
        exemplars = make_exemplars(
            images.meta["keypoints"], video, frame, labels=images.labels, seed=seed
        )
    if len(exemplars) == 0:
        raise DataError(f"{images.name}: no query has enough labelled positives and negatives")
    if len(embeddings) != len(images):
        raise DataError(f"{len(embeddings)} embeddings for {len(images)} images")
    if ltp > 0:
        embeddings = ltp_stack(embeddings, video, frame, p=ltp)
        mirror = None if mirror is None else ltp_stack(mirror, video, frame, p=ltp)
    out: dict[str, float] = {}
    image = evaluate_exemplars(embeddings, exemplars, mode="image")
    out["roc_auc_image"] = image["roc_auc"]
    if mirror is None:
        out |= {"roc_auc": image["roc_auc"], "mean_auc": image["mean_auc"], "mirror_rate": 0.0}
    else:
        ann = evaluate_exemplars(embeddings, exemplars, mirror, mode="annotated")
        best = evaluate_exemplars(embeddings, exemplars, mirror, mode="best")
        out |= {
            "roc_auc": ann["roc_auc"],
            "roc_auc_best": best["roc_auc"],
            "mean_auc": ann["mean_auc"],
            "mirror_rate": ann["mirror_rate"],
        }
    out["n_queries"] = float(len(exemplars))
    return out
