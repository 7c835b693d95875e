"""A run, end to end: fit a method, evaluate it beside the initial features, write the outputs.

Run directory layout::

    config.json        method, options, data, start
    model.pt           the fitted model (labelfree.load_model)
    checkpoint.pt      training state for --resume (distill.pt for the distillation stage)
    log.jsonl          one record per epoch (loss, seconds, structure diagnostics)
    metrics.json       {"representations": {name: {metric: value}}, "run": {...}}
    eval_embeddings.npz  embeddings of the evaluation set (with labels and paths)
    retrieval.png, loss.png, report.html
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.metrics import evaluate_embeddings, recall_ks_for
from labelfree.features.base import compute_features, get_extractor
from labelfree.methods.base import Method
from labelfree.train import distributed as dist
from labelfree.utils import (
    atomic_write_bytes,
    atomic_write_json,
    choose_device,
    kill_point_for_tests,
)

INITIAL_FEATURES = ("pixels", "hog", "hog-lda")
RUN_MARKER = "config.json"


def check_run_dir(out: str | Path, overwrite: bool = False, resume: bool = False) -> None:
    """The checks of :func:`prepare_run_dir` without touching the disk, so that a command can
    refuse a bad ``--out`` before it loads data or trains."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if resume:
            return
        if not overwrite:
            raise DataError(
                f"--out {out}: folder exists and is not empty; pass --overwrite to replace the "
                "run in it, --resume to continue it, or choose another folder"
            )
        if not (out / RUN_MARKER).exists():
            raise DataError(
                f"--out {out}: refusing to overwrite a folder that does not hold a labelfree run"
            )
    elif resume:
        raise DataError(f"--resume: {out} holds no run to resume")


def check_before_run(
    method: Any, train: ImageSet, out: str | Path, overwrite: bool, resume: bool
) -> None:
    """Everything that can be refused before the run folder is created: the options, the
    size of the training set, the output folder."""
    method.validate_params()
    if len(train) < method.min_items():
        raise DataError(
            f"{train.name}: {len(train)} images, but method {method.name!r} with these "
            f"options needs at least {method.min_items()}"
        )
    check_run_dir(out, overwrite=overwrite, resume=resume)


def prepare_run_dir(out: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``out``; refuse an existing non-empty folder unless asked to overwrite or resume."""
    check_run_dir(out, overwrite=overwrite, resume=resume)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if resume:
            return out
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only location, a file in the path
        raise DataError(f"--out {out}: cannot create the run folder ({exc.strerror})") from None
    return out


def start_run(
    method: Any,
    train: ImageSet,
    eval_set: ImageSet | None,
    out: str | Path,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Prepare the run folder and write its config.json (method, options, data)."""
    out = prepare_run_dir(out, overwrite=overwrite, resume=resume)
    config = {
        "method": method.name,
        "params": method.get_params(),
        "train": {"name": train.name, "n": len(train), "image_size": list(train.image_size)},
        "eval": None if eval_set is None else {"name": eval_set.name, "n": len(eval_set)},
    }
    atomic_write_json(out / RUN_MARKER, config)
    return out


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


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise DataError(f"{run_dir}: no metrics.json (was the run fitted with --eval?)")
    return json.loads(path.read_text())
