"""A run, end to end: fit a method, evaluate it beside the initial features, write the outputs.

The run folder's layout and helpers are in :mod:`labelfree.runs`.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.metrics import evaluate_embeddings, recall_ks_for
from labelfree.features.base import compute_features
from labelfree.features.registry import get_extractor
from labelfree.methods.base import Method
from labelfree.runs import check_before_run, start_run
from labelfree.train import distributed as dist
from labelfree.utils import (
    atomic_write_bytes,
    atomic_write_json,
    choose_device,
    kill_point_for_tests,
)

INITIAL_FEATURES = ("pixels", "hog", "hog-lda")


def evaluate_representations(
    method: Method,
    train: ImageSet,
    eval_set: ImageSet,
    features: tuple[str, ...] = INITIAL_FEATURES,
    seed: int = 0,
) -> tuple[dict[str, dict[str, float]], np.ndarray, dict[str, Any]]:
    """Metrics of each initial feature (fitted on ``train``) and of the learned embedding.

    Returns ``(metrics by representation, eval embeddings, NMI k-means settings)``.
    """
    if eval_set.labels is None:
        raise DataError(f"{eval_set.name}: evaluation needs labels (class sub-folders or a list)")
    ks = recall_ks_for(len(eval_set), eval_set.name)
    out: dict[str, dict[str, float]] = {}
    settings: dict[str, Any] = {}
    for name in features:
        kill_point_for_tests("evaluate")
        # The method's own g(x) is already fitted on ``train``: reuse it.
        ext = method.extractor if name == method.features else get_extractor(name).fit(train)
        feats = compute_features(ext, eval_set, cache=method.cache)
        res = evaluate_embeddings(feats, eval_set.labels, ks=ks, seed=seed)
        settings = res.pop("nmi_settings", settings)
        out[name] = res
    emb = method.embed(eval_set)
    res = evaluate_embeddings(emb, eval_set.labels, ks=ks, seed=seed)
    settings = res.pop("nmi_settings", settings)
    out["embedding"] = res
    return out, emb, settings


def fit_run(
    method: Method,
    train: ImageSet,
    out: str | Path,
    eval_set: ImageSet | None = None,
    overwrite: bool = False,
    resume: bool = False,
    features: tuple[str, ...] = INITIAL_FEATURES,
    report: bool = True,
) -> dict[str, Any]:
    """Fit ``method`` on ``train`` into the run folder ``out`` and, with ``eval_set``, evaluate
    and write metrics.json and the report. Returns the metrics (empty without evaluation)."""
    from labelfree.frames.pipeline import is_frame_method, run_frames

    check_before_run(method, train, out, overwrite, resume)
    if is_frame_method(method):  # pixel-level object frames: landmark / flow probes
        return run_frames(method, train, out, eval_set, overwrite, resume, report=report)
    # Under torchrun every rank runs this function; rank 0 alone touches the run folder.
    dist.init_from_env(choose_device(method.device))
    if dist.rank() != 0:
        dist.barrier()
        method.fit(train, run_dir=out, resume=resume)
        return {}
    out = start_run(method, train, eval_set, out, overwrite=overwrite, resume=resume)
    dist.barrier()
    t0 = time.perf_counter()
    method.fit(train, run_dir=out, resume=resume)
    fit_seconds = time.perf_counter() - t0
    method.save(out / "model.pt")
    if eval_set is None:
        return {}
    metrics, emb, nmi_settings = evaluate_representations(method, train, eval_set, features)
    result = {
        "representations": metrics,
        "run": {
            "method": method.name,
            "start": method.start,
            "features": method.features,
            "backbone": method.backbone if method.start != "feature-head" else None,
            "train": train.name,
            "eval": eval_set.name,
            "n_train": len(train),
            "n_eval": len(eval_set),
            "fit_seconds": fit_seconds,
            "seed": method.seed,
            "nmi_kmeans": nmi_settings,
        },
    }
    # Both files atomic, metrics.json last: its presence marks a complete evaluation.
    buf = io.BytesIO()
    np.savez(
        buf,
        embeddings=emb,
        labels=eval_set.labels,
        paths=np.array(eval_set.paths or [], dtype=str),
    )
    atomic_write_bytes(out / "eval_embeddings.npz", buf.getvalue())
    atomic_write_json(out / "metrics.json", result)
    if report:
        from labelfree.report.html import retrieval_grid, write_report

        retrieval_grid(eval_set, emb, out / "retrieval.png", seed=method.seed)
        write_report(out)
    return result
