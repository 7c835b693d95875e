"""Evaluation and pictures of ``cpfs`` (seed 004 Ch.8): frozen segmentation probes on held-out
frames with object masks, and how well the embedding groups pixels by object, beside the same network
with random weights; ``flow.png`` shows frames, exact flow, masks and the learned embedding.

The chapter measures CPFS by fine-tuning AlexNet on PASCAL VOC; with no such data here, its
claim (the flow-similarity pretext beats direct flow classification, which beats a random
network, §4.6) is tested with frozen per-pixel probes of object categories
(:mod:`labelfree.evaluate.segmentation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelfree.data.imageset import DataError, ImageSet
from labelfree.evaluate.field_drawing import draw_rows, flow_to_rgb, labels_to_rgb, project_rgb
from labelfree.evaluate.results import Metrics
from labelfree.evaluate.segmentation import (
    cell_labels,
    flat_cells,
    linear_probe_miou,
    nn_transfer_miou,
    sample_cells,
)
from labelfree.losses.cpfs import gather_cells

CPFS_METRICS = ("probe_miou", "nn_miou", "group_auc")
#: Frames used on each side of a probe, and training cells the probes are fitted on.
MAX_FRAMES, MAX_FIT_CELLS = 64, 10000


def _frames(images: ImageSet, k: int, seed: int) -> ImageSet:
    if len(images) <= k:
        return images
    pick = np.sort(np.random.default_rng(seed).choice(len(images), k, replace=False))
    return images.subset(pick)


def _split_by_video(images: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    video = np.asarray(images.meta.get("video", np.arange(len(images))))
    ids = np.random.default_rng(seed).permutation(np.unique(video))
    if len(ids) < 2:
        raise DataError(f"{images.name}: need two videos to split for the segmentation probe")
    first = np.isin(video, ids[: len(ids) // 2])
    return images.subset(np.flatnonzero(first)), images.subset(np.flatnonzero(~first))


def grouping_auc(method: Any, images: ImageSet, cells: int = 256, seed: int = 0) -> float:
    """ROC-AUC of the embedding's cosine similarity for telling pixel pairs of the same object
    (or both background) from pairs of different objects, over ``cells`` random cells of each
    frame: does "what moves together is embedded together" hold on held-out frames?"""
    from sklearn.metrics import roc_auc_score

    if "objects" not in images.meta:
        return float("nan")
    _, emb = method.features(images)
    obj = torch.from_numpy(cell_labels(images.meta["objects"]).reshape(len(images), -1))
    gen = torch.Generator().manual_seed(seed)
    pick = torch.stack([torch.randperm(obj.shape[1], generator=gen)[:cells] for _ in obj])
    phi = gather_cells(emb, pick)
    ids = torch.gather(obj.long(), 1, pick)
    iu = torch.triu_indices(pick.shape[1], pick.shape[1], offset=1)
    sim = (phi @ phi.transpose(1, 2))[:, iu[0], iu[1]].reshape(-1)
    same = (ids[:, iu[0]] == ids[:, iu[1]]).reshape(-1)
    if same.all() or not same.any():
        return float("nan")
    return float(roc_auc_score(same.numpy(), sim.numpy()))


def probe(method: Any, fit: ImageSet, test: ImageSet, n_classes: int, seed: int) -> dict:
    """The three columns of :data:`CPFS_METRICS` for one network."""
    hf, ef = method.features(fit)
    ht, et = method.features(test)
    yf = cell_labels(fit.meta["segmentation"]).ravel()
    yt = cell_labels(test.meta["segmentation"]).ravel()
    pick = sample_cells(len(yf), MAX_FIT_CELLS, seed)
    return {
        "probe_miou": linear_probe_miou(
            flat_cells(hf)[pick], yf[pick], flat_cells(ht), yt, n_classes, seed
        ),
        "nn_miou": nn_transfer_miou(flat_cells(ef)[pick], yf[pick], flat_cells(et), yt, n_classes),
        "group_auc": grouping_auc(method, test, seed=seed),
    }


def evaluate_cpfs(
    method: Any, eval_set: ImageSet, train: ImageSet | None = None, seed: int = 0
) -> Metrics:
    """Probe ``method`` and a randomly initialised copy (see the module docstring)."""
    if "segmentation" not in eval_set.meta:
        raise DataError(
            f"{eval_set.name}: the cpfs probes need object masks in meta['segmentation'] "
            "(e.g. --eval synthetic-sprites:test)"
        )
    if train is not None and "segmentation" in train.meta:
        fit, test = train, eval_set
    else:
        fit, test = _split_by_video(eval_set, seed)
    fit, test = _frames(fit, MAX_FRAMES, seed), _frames(test, MAX_FRAMES, seed + 1)
    n_classes = len(eval_set.meta.get("categories", [])) or int(
        max(fit.meta["segmentation"].max(), test.meta["segmentation"].max()) + 1
    )
    baseline = method.clone().init_untrained(fit)
    reps = {
        method.name: probe(method, fit, test, n_classes, seed),
        "random-net": probe(baseline, fit, test, n_classes, seed),
    }
    return Metrics(
        reps,
        CPFS_METRICS,
        higher_is_better=True,
        run={"kind": "cpfs", "objective": method.objective, "n_probe_frames": len(fit)},
        heading="Metrics: cross-pixel flow similarity beside the same network with random weights",
        note="probe_miou: logistic regression from the frozen hypercolumn to object categories, "
        f"fitted on {MAX_FIT_CELLS} cells of training frames, mIoU on held-out frames; "
        "nn_miou: nearest-neighbour label transfer with the embedding; group_auc: ROC-AUC of "
        "the embedding's cosine for same-object vs different-object pixel pairs of held-out "
        "frames. Higher is better.",
    )


def draw_cpfs(method: Any, eval_set: ImageSet, path: Path, n: int = 6) -> None:
    """``path``: for ``n`` frames, the image, its exact flow, its object categories and the
    embedding projected to RGB (a fixed random projection)."""
    show = eval_set.subset(np.arange(min(n, len(eval_set))))
    _, emb = method.features(show)
    up = torch.nn.functional.interpolate(emb, scale_factor=2, mode="nearest").numpy()
    rows = [list(show.images), list(project_rgb(up))]
    titles = ["frame", "embedding (random projection)"]
    if "flow" in show.meta:
        rows.insert(1, list(flow_to_rgb(np.asarray(show.meta["flow"]))))
        titles.insert(1, "exact flow")
    if "segmentation" in show.meta:
        rows.insert(2, list(labels_to_rgb(np.asarray(show.meta["segmentation"]))))
        titles.insert(2, "object categories")
    draw_rows(rows, titles, path, f"{method.name} ({method.objective}) on {eval_set.name}")
