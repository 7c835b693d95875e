"""A frame run end to end: fit an object-frame method, probe it beside its baselines, write it.

Run folder (same layout as image-level runs)::

    config.json     method, options, data
    model.pt        the fitted model (labelfree.load_model)
    checkpoint.pt, log.jsonl
    metrics.json    {"representations": {method: {...}, "random-net": {...}, "mean-shape": {...}},
                     "run": {...}}
    landmarks.png   learned points (and, for dense methods, embedding colours) on eval images

Probes (seed 004 Ch.4–7 protocols, :mod:`labelfree.evaluate.landmarks`): on landmark data
(``meta["landmarks"]``) a bias-free linear regressor from the method's points to the annotated
landmarks, error in % inter-ocular distance with the few-shot curve, and the cross-instance
nearest-label matching error in pixels (pairs of images of different identities); on flow data
(``meta["flow"]``) the dense matching error against the exact flow. The untrained network with the
same options ("random-net") and the mean training shape ("mean-shape") are scored in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.landmarks import FRAME_METRICS  # noqa: F401  (re-exported)
from labelfree.methods.frames import FrameMethod
from labelfree.utils import atomic_write_json

SHOTS = (1, 5, 10, 20, None)


def is_frame_method(method: Any) -> bool:
    return isinstance(method, FrameMethod)


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
    method: FrameMethod,
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


def probe_flow(method: FrameMethod, images: ImageSet, seed: int = 0) -> dict[str, float]:
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
    method: FrameMethod, probe_train: ImageSet, probe_test: ImageSet, seed: int
) -> dict[str, dict[str, float]]:
    from labelfree.evaluate.landmarks import mean_shape_error

    baseline = type(method)(**method.get_params()).init_untrained(probe_train)
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


def _pictures(method: FrameMethod, eval_set: ImageSet, out: Path) -> None:
    from labelfree.evaluate.landmarks import draw_embedding_colours, draw_landmarks

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


def run_frames(
    method: FrameMethod,
    train: ImageSet,
    out: str | Path,
    eval_set: ImageSet | None = None,
    overwrite: bool = False,
    resume: bool = False,
    report: bool = True,
    max_probe_train: int = 2000,
) -> dict[str, Any]:
    """Fit a frame method into the run folder ``out`` and, with ``eval_set``, probe it."""
    from labelfree.runs import start_run

    out = start_run(method, train, eval_set, out, overwrite=overwrite, resume=resume)
    t0 = time.perf_counter()
    method.fit(train, run_dir=out, resume=resume)
    fit_seconds = time.perf_counter() - t0
    method.save(out / "model.pt")
    if eval_set is None:
        return {}
    probe_train = train
    if len(train) > max_probe_train:
        pick = np.random.default_rng(method.seed).permutation(len(train))[:max_probe_train]
        probe_train = _subset(train, np.sort(pick))
    if "landmarks" in eval_set.meta and "landmarks" not in probe_train.meta:
        probe_train, eval_set = split_for_probe(eval_set, method.seed)
    reps = _probe_all(method, probe_train, eval_set, method.seed)
    result = {
        "representations": reps,
        "run": {
            "method": method.name,
            "kind": "frames",
            "train": train.name,
            "eval": eval_set.name,
            "n_train": len(train),
            "n_probe_train": len(probe_train),
            "n_eval": len(eval_set),
            "fit_seconds": fit_seconds,
            "seed": method.seed,
        },
    }
    atomic_write_json(out / "metrics.json", result)
    if report:
        from labelfree.report.html import write_report

        _pictures(method, eval_set, out)
        write_report(out)
    return result


def evaluate_frames(method: FrameMethod, eval_set: ImageSet, seed: int = 0) -> dict[str, Any]:
    """`labelfree evaluate` for a frame model: probes on ``eval_set`` alone (landmark regressor
    fitted on half of its identities, scored on the other half; flow probe on all of it)."""
    if "landmarks" in eval_set.meta:
        probe_train, probe_test = split_for_probe(eval_set, seed)
    else:
        probe_train = probe_test = eval_set
    return {"representations": _probe_all(method, probe_train, probe_test, seed)}
