"""Query exemplars from pose ground truth, for the exemplar ROC-AUC protocol
(:mod:`labelfree.evaluate.exemplar`).

**Exemplar generation** for a set with pose ground truth (:func:`make_exemplars`): queries are
drawn at random; a frame is a positive when its pose distance to the query is at most
``pos_max`` and a negative when at least ``neg_min`` (the gap between the thresholds leaves
ambiguous frames unlabelled, like the human annotations); by default frames of the query's own
video are never labelled (``own_video``), so the labels measure posture retrieval across
videos (people). Pose distance is the mean
Euclidean distance between corresponding keypoints in figure units; with ``mirror_invariant``
it is the smaller of the distance to the frame and to its mirror, and the flip flag records
which one was smaller — so a frame showing the query's posture facing the other way is a
positive "in the mirror", as in the Olympic Sports labels. With ``labels`` (the action /
sport), negatives come from the query's own class first, as the Olympic Sports annotations were
made per sport.
"""

from __future__ import annotations

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.data.sequences import Exemplars

__all__ = ["make_exemplars", "pose_distance"]


def pose_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance between corresponding keypoints: ``(..., J, 2)`` → ``(...)``."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1).mean(axis=-1)


def make_exemplars(
    keypoints: np.ndarray,
    video: np.ndarray,
    frame: np.ndarray,
    n_queries: int = 120,
    n_pos: int = 10,
    n_neg: int = 10,
    pos_max: float = 0.12,
    neg_min: float = 0.35,
    min_pos: int = 3,
    exclude_radius: int = 3,
    own_video: bool = False,
    labels: np.ndarray | None = None,
    mirror_invariant: bool = True,
    seed: int = 0,
) -> Exemplars:
    """Query exemplars with positives / negatives from pose ground truth (module docstring).

    Args:
        keypoints: ``(N, J, 2)`` pose of each frame (``meta["keypoints"]`` of synthetic-poses).
        video, frame: the frame-sequence arrays (``meta["video"]``, ``meta["frame"]``).
        n_queries: queries to draw (fewer when not enough frames have ``min_pos`` positives).
        n_pos, n_neg: at most this many positives / negatives per query, drawn at random among
            the qualifying frames (Olympic Sports has ~20 labelled frames per query).
        pos_max: largest pose distance of a positive (figure units: torso length 1).
        neg_min: smallest pose distance of a negative. Defaults 0.12 / 0.35: on synthetic-poses
            0.12 is the distance consecutive frames of fast actions reach, i.e. "the same
            posture"; 0.35 is about the typical distance of two frames of the same action.
        min_pos: a candidate query needs at least this many positives (and one negative).
        exclude_radius: with ``own_video``, frames of the query's own video this close in time
            are never labelled (near duplicates).
        own_video: whether frames of the query's own video may be labelled at all. Default
            False: every synthetic video has its own appearance, so same-video frames could be
            matched by appearance alone; cross-video labels measure posture retrieval.
        labels: optional class per frame (action / sport). Negatives are then drawn from the
            query's class first (the hard, per-sport negatives of Olympic Sports) and topped up
            from other classes when the class has fewer than ``n_neg``; positives come from any
            class (a posture is a posture).
        mirror_invariant: compare with the mirror of each frame too (see module docstring).
        seed: query and label draws.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    video = np.asarray(video, dtype=np.int64)
    frame = np.asarray(frame, dtype=np.int64)
    n = len(kp)
    if kp.ndim != 3 or kp.shape[-1] != 2 or video.shape != (n,) or frame.shape != (n,):
        raise DataError(
            f"keypoints must be (N, J, 2) with video/frame (N,): {kp.shape}, {video.shape}, "
            f"{frame.shape}"
        )
    if not pos_max < neg_min:
        raise DataError(f"pos_max ({pos_max}) must be below neg_min ({neg_min})")
    mirrored = kp.copy()
    mirrored[..., 0] *= -1
    rng = np.random.default_rng(seed)
    ex = Exemplars(np.empty(0, dtype=np.int64), [], [])
    queries = []
    for q in rng.permutation(n):
        if len(queries) >= n_queries:
            break
        direct = pose_distance(kp, kp[q][None])
        if mirror_invariant:
            flipped = pose_distance(mirrored, kp[q][None])
            flip = flipped < direct
            dist = np.minimum(direct, flipped)
        else:
            flip = np.zeros(n, dtype=bool)
            dist = direct
        same = video == video[q]
        allowed = ~same if not own_video else ~(same & (np.abs(frame - frame[q]) <= exclude_radius))
        pos = np.flatnonzero(allowed & (dist <= pos_max))
        neg_ok = allowed & (dist >= neg_min)
        if len(pos) < min_pos or not neg_ok.any():
            continue
        pos = np.sort(rng.choice(pos, size=min(n_pos, len(pos)), replace=False))
        if labels is None:
            neg = rng.choice(
                np.flatnonzero(neg_ok), size=min(n_neg, int(neg_ok.sum())), replace=False
            )
        else:
            in_class = np.asarray(labels) == labels[q]
            first = np.flatnonzero(neg_ok & in_class)
            first = rng.choice(first, size=min(n_neg, len(first)), replace=False)
            rest = np.flatnonzero(neg_ok & ~in_class)
            rest = rng.choice(rest, size=min(n_neg - len(first), len(rest)), replace=False)
            neg = np.concatenate([first, rest])
        neg = np.sort(neg.astype(np.int64))
        queries.append(int(q))
        ex.positives.append(pos)
        ex.negatives.append(neg)
        ex.pos_flip.append(flip[pos])
        ex.neg_flip.append(flip[neg])
    ex.queries = np.asarray(queries, dtype=np.int64)
    return ex
