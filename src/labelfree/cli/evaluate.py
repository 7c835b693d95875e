"""`labelfree evaluate`: score a model on labelled held-out data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labelfree.cli.common import (
    DataOpt,
    ImageSizeOpt,
    ModelOpt,
    OnErrorOpt,
    RootOpt,
    StreamOpt,
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
    stream: StreamOpt = None,
) -> None:
    """Score a model on labelled held-out DATA: Recall@K, MAP@R, R-precision, NMI, mAP.

    The model's own g(x) uses the extractor fitted at training time; other initial features listed in --features are fitted on DATA itself (without its labels).
    """
    from labelfree.evaluate.metrics import recall_ks_for
    from labelfree.evaluate.rerank import RERANKERS, rerank_metrics
    from labelfree.methods import load_model

    if rerank not in ("none", *RERANKERS, "roul"):
        raise DataError(f"--rerank {rerank!r}: choose none, {', '.join(RERANKERS)} or roul")
    if protocol not in ("retrieval", "exemplar"):
        raise DataError(f"--protocol {protocol!r}: choose retrieval or exemplar")
    m = load_model(str(_model_path(model)))
    size = image_size or (m.image_size_[0] if m.image_size_ else None)
    eval_set = _load(data, size, data_root, on_error, stream=stream)
    if protocol == "exemplar" or rerank != "none":
        if not hasattr(m, "embed"):
            what = "--protocol exemplar" if protocol == "exemplar" else f"--rerank {rerank}"
            raise DataError(f"{what} needs a model with an image embedding; {m.name!r} gives maps")
    if protocol == "exemplar":
        _evaluate_exemplar(m, eval_set, features, ltp, json_out)
        return
    metrics = m.evaluate(eval_set, features=tuple(f for f in features.split(",") if f))
    reps = dict(metrics.representations)
    ks = recall_ks_for(len(eval_set), eval_set.name)
    if rerank == "roul":  # needs the model's order network: the embedding only
        from labelfree.evaluate.rerank import roul_rerank_metrics

        reps["embedding + roul"] = roul_rerank_metrics(m, eval_set, eval_set.labels, ks=ks)
    elif rerank != "none":
        for name, f in metrics.arrays["vectors"].items():
            reps[f"{name} + {rerank}"] = rerank_metrics(f, eval_set.labels, ks=ks, method=rerank)
    print_metrics(reps, eval_set.name, metrics.summary or metrics.columns)
    if rerank != "none":
        cost = reps[f"embedding + {rerank}"]["rerank_ms_per_query"]
        console.print(f"{rerank} re-ranking: {cost:.2f} ms per query ({len(eval_set)} items)")
    if json_out is not None:
        from labelfree.utils import atomic_write_json

        metrics.representations = reps
        atomic_write_json(json_out, metrics.to_json())


def _evaluate_exemplar(
    m: Any, eval_set: ImageSet, features: str, ltp: int, json_out: Path | None
) -> None:
    """The exemplar ROC-AUC protocol for the model and the initial features, image + mirror."""
    from labelfree.data.sequences import mirror_images
    from labelfree.evaluate.exemplar import exemplar_protocol
    from labelfree.evaluate.retrieval_run import initial_extractor
    from labelfree.features.base import compute_features

    mirrored = mirror_images(eval_set)
    # The protocol's queries and labelled frames depend on the data only (seed 0), never on the
    # model, so that two models are scored on the same exemplars.
    reps: dict[str, dict[str, float]] = {}
    for name in [f for f in features.split(",") if f]:
        ext = initial_extractor(m, name, eval_set)
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
