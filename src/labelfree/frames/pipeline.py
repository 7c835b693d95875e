"""The evaluation of an object-frame method: probes beside its baselines, and its pictures.

Probes (seed 004 Ch.4–7 protocols, :mod:`labelfree.evaluate.landmarks`): on landmark data
(``meta["landmarks"]``) a bias-free linear regressor from the method's points to the annotated
landmarks, error in % inter-ocular distance with the few-shot curve, and the cross-instance
nearest-label matching error in pixels (pairs of images of different identities); on flow data
(``meta["flow"]``) the dense matching error against the exact flow. The untrained network with the
same options ("random-net") and the mean training shape ("mean-shape") are scored in the same run.
Lower is better for every column. A frame run writes ``landmarks.png`` (learned points, and for
dense methods ``embedding.png``, the embedding colours) beside the image-level run files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.landmarks import FRAME_METRICS
from labelfree.evaluate.results import Metrics

SHOTS = (1, 5, 10, 20, None)


def _subset(images: ImageSet, idx: np.ndarray) -> ImageSet:
    """Subset keeping the name; the per-image meta arrays (landmarks, flow, ...) follow the
    images through ``meta["per_item"]`` (see :meth:`ImageSet.subset`)."""
    return images.subset(np.asarray(idx), name=images.name)


def cross_instance_pairs(images: ImageSet, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``n_pairs`` random pairs (a, b) of images of different identities (any two images
    when the data has no ``meta["identity"]``)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    a = rng.integers(0, n, size=4 * n_pairs)
    b = rng.integers(0, n, size=4 * n_pairs)
    ident = images.meta.get("identity")
    keep = a != b if ident is None else np.asarray(ident)[a] != np.asarray(ident)[b]
    a, b = a[keep][:n_pairs], b[keep][:n_pairs]
    return a, b


def probe_landmarks(
    method: Any,
    probe_train: ImageSet,
    probe_test: ImageSet,
    shots=SHOTS,
    n_pairs: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Regression probe (% IOD, with few-shot curve) and cross-instance matching error (px)."""
    from labelfree.evaluate.landmarks import landmark_probe, matching_error

    iod = probe_test.meta["iod"]
    res = landmark_probe(
        method.points(probe_train),
        probe_train.meta["landmarks"],
        method.points(probe_test),
        probe_test.meta["landmarks"],
        iod,
        shots=shots,
        seed=seed,
    )
    out = {f"iod_error_{k}": v for k, v in res.items()}
    a, b = cross_instance_pairs(probe_test, n_pairs, seed)
    if len(a):
        lm = probe_test.meta["landmarks"]
        dense = method.dense_map(probe_test)
        out["matching_px"] = matching_error(dense[a], lm[a], dense[b], lm[b])
    return out


def probe_flow(method: Any, images: ImageSet, seed: int = 0) -> dict[str, float]:
    """Dense matching error against the exact flow between consecutive frames (px and % of
    width)."""
    from labelfree.evaluate.landmarks import flow_matching_error

    succ = method._flow_successors(images)
    t = np.flatnonzero(succ >= 0)
    dense = method.dense_map(images)
    mask = images.meta.get("mask")
    kw = dict(mask=None if mask is None else mask[t], seed=seed)
    px = flow_matching_error(dense[t], dense[succ[t]], images.meta["flow"][t], **kw)
    return {"flow_matching_px": px, "flow_matching_pct": 100.0 * px / images.image_size[1]}


def _probe_all(
    method: Any, probe_train: ImageSet, probe_test: ImageSet, seed: int
) -> dict[str, dict[str, float]]:
    from labelfree.evaluate.landmarks import mean_shape_error

    baseline = method.clone().init_untrained(probe_train)
    reps: dict[str, dict[str, float]] = {}
    if "landmarks" in probe_test.meta:
        reps[method.name] = probe_landmarks(method, probe_train, probe_test, seed=seed)
        reps["random-net"] = probe_landmarks(baseline, probe_train, probe_test, seed=seed)
        reps["mean-shape"] = {
            "iod_error_all": mean_shape_error(
                probe_train.meta["landmarks"], probe_test.meta["landmarks"], probe_test.meta["iod"]
            )
        }
    if "flow" in probe_test.meta:
        reps.setdefault(method.name, {}).update(probe_flow(method, probe_test, seed))
        reps.setdefault("random-net", {}).update(probe_flow(baseline, probe_test, seed))
    if not reps:
        raise DataError(
            f"{probe_test.name}: frame probes need meta['landmarks'] (e.g. synthetic-faces) or "
            "meta['flow'] (synthetic-arm)"
        )
    return reps


def split_for_probe(images: ImageSet, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Halve an evaluation set for `labelfree evaluate` (regressor fitted on one half, scored on
    the other), by identity when the data has identities so no face is in both halves."""
    n = len(images)
    ident = images.meta.get("identity")
    rng = np.random.default_rng(seed)
    if ident is not None:
        ids = np.unique(ident)
        first = set(rng.permutation(ids)[: len(ids) // 2].tolist())
        in_a = np.array([i in first for i in ident])
    else:
        in_a = np.zeros(n, bool)
        in_a[rng.permutation(n)[: n // 2]] = True
    if in_a.all() or not in_a.any():
        raise DataError(f"{images.name}: too few images or identities to split for the probe")
    return _subset(images, np.flatnonzero(in_a)), _subset(images, np.flatnonzero(~in_a))


def draw_frames(method: Any, eval_set: ImageSet, out: Path) -> None:
    """``landmarks.png`` and, for dense methods, ``embedding.png`` of 16 evaluation images."""
    from labelfree.evaluate.landmarks import draw_embedding_colours, draw_landmarks

    out = Path(out)
    show = _subset(eval_set, np.arange(min(16, len(eval_set))))
    draw_landmarks(
        show.images,
        method.points(show),
        out / "landmarks.png",
        true=show.meta.get("landmarks"),
        title=f"{method.name}: learned points (white x: annotation)",
    )
    dense = method.dense_map(show)
    if dense.shape[1] >= 3:
        draw_embedding_colours(show.images, dense[:, :3], out / "embedding.png")


def evaluate_frames(
    method: Any,
    eval_set: ImageSet,
    train: ImageSet | None = None,
    seed: int = 0,
    max_probe_train: int = 2000,
) -> Metrics:
    """Probe ``method`` on ``eval_set``; the landmark regressor is fitted on (at most
    ``max_probe_train`` images of) ``train`` when it has landmarks, else on half of
    ``eval_set``'s identities and scored on the other half. The flow probe uses all of it."""
    probe_train, probe_test = eval_set, eval_set
    if train is not None:
        probe_train = train
        if len(train) > max_probe_train:
            pick = np.random.default_rng(seed).permutation(len(train))[:max_probe_train]
            probe_train = _subset(train, np.sort(pick))
    if "landmarks" in eval_set.meta and (train is None or "landmarks" not in probe_train.meta):
        probe_train, probe_test = split_for_probe(eval_set, seed)
    reps = _probe_all(method, probe_train, probe_test, seed)
    return Metrics(
        reps,
        FRAME_METRICS,
        higher_is_better=False,
        run={"kind": "frames", "n_probe_train": len(probe_train)},
        heading="Metrics: the learned network beside a randomly initialised one and the mean "
        "shape (object frames learned from synthetic warps, network from random weights)",
        note="iod_error_*: bias-free linear regression from the learned points to the annotated "
        "landmarks, % of inter-ocular distance, fitted on all (or 1/5/10/20) probe images; "
        "matching_px: nearest-label matching across instances; flow_matching: against the "
        "exact flow. Errors: lower is better, best per column in bold.",
    )
