"""The run folder: its checks, creation, config.json and metrics.json, in one place.

Layout of a run (written by :func:`labelfree.pipeline.fit_run`)::

    config.json        method, options, data, start (its presence marks a labelfree run)
    model.pt           the fitted model (labelfree.load_model)
    checkpoint.pt      training state for --resume (distill.pt for the distillation stage)
    log.jsonl          one record per epoch (loss, seconds, structure diagnostics)
    metrics.json       {"representations": {name: {metric: value}}, "run": {...}}
    eval_embeddings.npz  embeddings of the evaluation set (with labels and paths)
    retrieval.png, loss.png, report.html
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from labelfree.data.imageset import DataError, ImageSet
from labelfree.utils import atomic_write_json

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
    train.require(method.min_items(), f"method {method.name!r} with these options")
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


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise DataError(f"{run_dir}: no metrics.json (was the run fitted with --eval?)")
    return json.loads(path.read_text())
