"""A run, end to end: fit a method, let it evaluate itself, write the outputs.

The same path serves every method, image-level or pixel-level: the method's own ``evaluate``
returns :class:`~labelfree.evaluate.results.Metrics` (its rows, its columns, which way is
better), ``write_evaluation`` leaves its files before metrics.json and ``draw_evaluation`` its
pictures after. The run folder's layout and helpers are in :mod:`labelfree.runs`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from labelfree.data.imageset import ImageSet
from labelfree.evaluate.retrieval_run import INITIAL_FEATURES
from labelfree.runs import check_before_run, start_run
from labelfree.train import distributed as dist
from labelfree.utils import atomic_write_json, choose_device

__all__ = ["INITIAL_FEATURES", "fit_run", "run_facts"]


def run_facts(method: Any) -> dict[str, Any]:
    """What a metrics.json says about the method: its name, seed, and where it has them the
    start, g(x) and backbone."""
    params = method.get_params()
    facts: dict[str, Any] = {"method": method.name, "seed": params.get("seed")}
    for key in ("start", "features", "backbone"):
        if key in params:
            facts[key] = params[key]
    if params.get("start") == "feature-head":
        facts["backbone"] = None
    return facts


def fit_run(
    method: Any,
    train: ImageSet,
    out: str | Path,
    eval_set: ImageSet | None = None,
    overwrite: bool = False,
    resume: bool = False,
    features: tuple[str, ...] = INITIAL_FEATURES,
    report: bool = True,
) -> dict[str, Any]:
    """Fit ``method`` on ``train`` into the run folder ``out`` and, with ``eval_set``, evaluate
    and write metrics.json and the report. Returns the metrics.json content (empty without
    evaluation)."""
    check_before_run(method, train, out, overwrite, resume)
    # Under torchrun every rank runs this function; rank 0 alone touches the run folder.
    dist.init_from_env(choose_device(method.runtime.device))
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
    metrics = method.evaluate(eval_set, train=train, features=features, seed=0)
    metrics.run = {
        **run_facts(method),
        **metrics.run,
        "train": train.name,
        "eval": eval_set.name,
        "n_train": len(train),
        "n_eval": len(eval_set),
        "fit_seconds": fit_seconds,
    }
    # The method's files first, metrics.json last: its presence marks a complete evaluation.
    method.write_evaluation(out, eval_set, metrics)
    result = metrics.to_json()
    atomic_write_json(out / "metrics.json", result)
    if report:
        from labelfree.report.html import write_report

        method.draw_evaluation(out, eval_set, metrics)
        write_report(out)
    return result
