"""`labelfree evaluate`: score a model on labelled held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from labelfree.cli.common import (
    DataOpt,
    ImageSizeOpt,
    ModelOpt,
    OnErrorOpt,
    RootOpt,
    _load,
    _model_path,
    app,
    console,
    print_metrics,
)
from labelfree.data.imageset import DataError, ImageSet


@app.command()
def evaluate(
    model: ModelOpt,
    data: DataOpt,
    features: Annotated[
        str,
        typer.Option(
            help="Initial features to score beside the embedding (comma-separated, '' for none)."
        ),
    ] = "pixels,hog,hog-lda",
    rerank: Annotated[
        str,
        typer.Option(
            help="none | diffusion: also score every representation re-ranked by diffusion on "
            "the mutual kNN graph of DATA (manifold ranking), with its cost per query. "
            "roul: re-rank the embedding's top results by a ROUL model's relative orders."
        ),
    ] = "none",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics here.")
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="retrieval (class labels: Recall@K, MAP@R, NMI) | exemplar (frame sequences "
            "with pose ground truth or exemplar annotations: the Olympic Sports exemplar "
            "ROC-AUC of seed 001 Ch.3, best of image and mirror)."
        ),
    ] = "retrieval",
    ltp: Annotated[
        int,
        typer.Option(
            help="exemplar protocol: local temporal pooling radius p (seed 001 Eq. 3.9; 0 off)."
        ),
    ] = 0,
    image_size: ImageSizeOpt = None,
    data_root: RootOpt = None,
    on_error: OnErrorOpt = "fail",
) -> None:
    """Score a model on labelled held-out DATA: Recall@K, MAP@R, R-precision, NMI, mAP.

    The model's own g(x) uses the extractor fitted at training time; other initial features listed in --features are fitted on DATA itself (without its labels).
    """
    from labelfree.evaluate.metrics import evaluate_embeddings, recall_ks_for
    from labelfree.evaluate.rerank import RERANKERS, rerank_metrics
    from labelfree.features.base import compute_features
    from labelfree.methods import load_model

    if rerank not in (*RERANKERS, "roul"):
        raise DataError(f"--rerank {rerank!r}: choose one of {', '.join(RERANKERS)}, roul")
    m = load_model(str(_model_path(model)))
    eval_set = _load(
        data, image_size or (m.image_size[0] if m.image_size else None), data_root, on_error
    )
    from labelfree.frames.pipeline import FRAME_METRICS, evaluate_frames, is_frame_method

    if is_frame_method(m):  # object frames: landmark / flow probes instead of retrieval
        res = evaluate_frames(m, eval_set, seed=m.seed)
        print_metrics(res["representations"], eval_set.name, FRAME_METRICS)
        if json_out is not None:
            from labelfree.utils import atomic_write_json

            atomic_write_json(json_out, res)
        return
    if protocol not in ("retrieval", "exemplar"):
        raise DataError(f"--protocol {protocol!r}: choose retrieval or exemplar")
    if protocol == "exemplar":
        _evaluate_exemplar(m, eval_set, features, ltp, json_out)
        return
    if eval_set.labels is None:
        raise DataError(f"{eval_set.name}: evaluation needs labels (class sub-folders or a list)")
    ks = recall_ks_for(len(eval_set), eval_set.name)
    feats: dict[str, np.ndarray] = {}
    for name in [f for f in features.split(",") if f]:
        ext = m.extractor if name == m.features else _extractor(name).fit(eval_set)
        feats[name] = compute_features(ext, eval_set)
    feats["embedding"] = m.embed(eval_set)
    reps: dict[str, dict[str, float]] = {}
    settings: dict[str, Any] = {}
    for name, f in feats.items():
        reps[name] = evaluate_embeddings(f, eval_set.labels, ks=ks)
        settings = reps[name].pop("nmi_settings", settings)
    if rerank == "roul":  # needs the model's order network: the embedding only
        from labelfree.evaluate.rerank import roul_rerank_metrics

        reps["embedding + roul"] = roul_rerank_metrics(m, eval_set, eval_set.labels, ks=ks)
    elif rerank != "none":
        for name, f in feats.items():
            reps[f"{name} + {rerank}"] = rerank_metrics(f, eval_set.labels, ks=ks, method=rerank)
    print_metrics(reps, title=f"{eval_set.name}")
    if rerank != "none":
        cost = reps[f"embedding + {rerank}"]["rerank_ms_per_query"]
        console.print(f"{rerank} re-ranking: {cost:.2f} ms per query ({len(eval_set)} items)")
    if json_out is not None:
        from labelfree.utils import atomic_write_json

        atomic_write_json(json_out, {"representations": reps, "run": {"nmi_kmeans": settings}})


def _extractor(name: str) -> Any:
    """An initial representation to score beside the model, fitted on the evaluation data.
    ``backbone`` only as the model's own g(x): a built-in backbone here would be random."""
    from labelfree.features.registry import get_extractor

    if name == "backbone":
        raise DataError(
            "--features backbone: only a model trained with -o features=backbone has a "
            "(pretrained) backbone g(x) to score; choose from pixels, hog, hog-lda"
        )
    return get_extractor(name)


def _evaluate_exemplar(
    m: Any, eval_set: ImageSet, features: str, ltp: int, json_out: Path | None
) -> None:
    """The exemplar ROC-AUC protocol for the model and the initial features, image + mirror."""
    from labelfree.data.sequences import mirror_images
    from labelfree.evaluate.exemplar import exemplar_protocol
    from labelfree.features.base import compute_features

    mirrored = mirror_images(eval_set)
    # The protocol's queries and labelled frames depend on the data only (seed 0), never on the
    # model, so that two models are scored on the same exemplars.
    reps: dict[str, dict[str, float]] = {}
    for name in [f for f in features.split(",") if f]:
        ext = m.extractor if name == m.features else _extractor(name).fit(eval_set)
        f, fm = compute_features(ext, eval_set), compute_features(ext, mirrored)
        reps[name] = exemplar_protocol(f, eval_set, fm, ltp=ltp, seed=0)
    reps["embedding"] = exemplar_protocol(
        m.embed(eval_set), eval_set, m.embed(mirrored), ltp=ltp, seed=0
    )
    table = Table(title=f"{eval_set.name}: exemplar ROC-AUC" + (f" (LTP p={ltp})" if ltp else ""))
    cols = ("roc_auc", "roc_auc_best", "roc_auc_image", "n_queries")
    table.add_column("representation")
    for c in cols:
        table.add_column(c, justify="right")
    for name, r in reps.items():
        table.add_row(name, *(f"{r[c]:.3f}" if c != "n_queries" else str(r[c]) for c in cols))
    console.print(table)
    if json_out is not None:
        from labelfree.utils import atomic_write_json

        atomic_write_json(json_out, {"representations": reps, "run": {"protocol": "exemplar"}})
