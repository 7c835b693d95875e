"""The ``labelfree`` command line: a thin layer over the Python API."""

from __future__ import annotations

import ast
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from labelfree.data.imageset import DataError, ImageSet
from labelfree.train.loop import CheckpointError
from labelfree.utils import atomic_save_npy

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Learn visual similarity without labels. Data specs: a folder of images (class "
    "sub-folders optional, used only for evaluation), a CSV list (path[,label]), or a bundled / "
    "benchmark name such as mnist5k:train, mnist5k:test, digits:train, cub200:test "
    "(see `labelfree datasets`).",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DataOpt = Annotated[
    str,
    typer.Option("--data", "-d", help="Images: a folder, a CSV list, or a name (mnist5k:train)."),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option(
        help="Resize (shorter side) and centre-crop images to this size. Default: 64 for "
        "folders, native for bundled sets."
    ),
]
RootOpt = Annotated[
    str | None,
    typer.Option(
        help="Root folder of a benchmark (cub200, cars196, sop); default "
        "$LABELFREE_DATA_ROOT/<standard folder name>."
    ),
]
OnErrorOpt = Annotated[
    str,
    typer.Option(
        help="Unreadable image files: 'fail' (stop, naming the file) or 'skip' "
        "(drop them with a warning and a count)."
    ),
]
ModelOpt = Annotated[
    Path, typer.Option("--model", "-m", help="A run folder (uses its model.pt) or a model file.")
]


def _load(spec: str, image_size: int | None, root: str | None, on_error: str, per_class=None):
    from labelfree.data.registry import load_data

    if on_error not in ("fail", "skip"):
        raise DataError(f"--on-error {on_error!r}: choose 'fail' or 'skip'")
    return load_data(spec, image_size=image_size, root=root, on_error=on_error, per_class=per_class)


def _read_recipe(path: Path) -> dict[str, Any]:
    import tomllib

    if not path.exists():
        raise DataError(f"--recipe {path}: no such file")
    try:
        rec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"--recipe {path}: not valid TOML ({exc})") from exc
    unknown = set(rec) - {"method", "options", "image_size", "data", "source", "notes"}
    if unknown:
        raise DataError(f"--recipe {path}: unknown keys {', '.join(sorted(unknown))}")
    return rec


def _model_path(model: Path) -> Path:
    return model / "model.pt" if model.is_dir() else model


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise DataError(f"--option {pair!r}: expected KEY=VALUE (e.g. -o k_pos=5)")
        key, value = pair.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip().replace("-", "_")] = value
    return out


RETRIEVAL_SHOWN = ("MAP@R", "R-precision", "R@1", "R@10", "NMI", "mAP")


def print_metrics(
    representations: dict[str, dict[str, float]],
    title: str = "",
    shown: tuple[str, ...] = RETRIEVAL_SHOWN,
) -> None:
    """The terminal table of ``shown`` metrics per representation (retrieval: the less
    saturated metrics first, METHODS.md §0; object frames: the probe errors)."""
    from labelfree.report.html import metrics_table_rows

    cols, rows = metrics_table_rows(representations, shown)
    table = Table(title=title or None)
    for c in cols:
        table.add_column(c, justify="left" if c == "representation" else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)


@app.command()
def fit(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Run folder to create.")],
    method: Annotated[
        str | None,
        typer.Option(help="Method: hadsell | mom (see `labelfree methods`). Default hadsell."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="A TOML recipe (recipes/*.toml): method and options of a published setup; "
            "options given on the command line override it."
        ),
    ] = None,
    eval: Annotated[
        str | None,
        typer.Option(
            "--eval", "-e", help="Labelled held-out images to evaluate on (any data spec)."
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            "--from",
            help="scratch | distill (CNN distilled from g(x), default) | feature-head (MLP over "
            "g(x)). Under torchrun write --from: torchrun reads --start as its --start-method.",
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="Initial features g(x): pixels | hog | hog-lda (default) | backbone."),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            help="CNN: small (default) | resnet18 | hf:<dir> | timm:<name> | torchvision:<name>."
        ),
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Embedding dimension (64).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per round (10).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Structure/representation rounds (1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Tuples per step (128).")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default depends on --start).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (0; CPU runs repeat).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N.")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Method option KEY=VALUE, repeatable (e.g. -o loss=contrastive -o k_pos=5); "
            "`labelfree methods` lists them.",
        ),
    ] = None,
    image_size: ImageSizeOpt = None,
    per_class: Annotated[
        int | None, typer.Option(help="Keep at most N images per class (needs labels).")
    ] = None,
    data_root: RootOpt = None,
    on_error: OnErrorOpt = "fail",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its last checkpoint.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a label-free method on DATA and write model, metrics and report to OUT."""
    from labelfree.methods import get_method
    from labelfree.pipeline import fit_run

    opts: dict[str, Any] = {}
    if recipe is not None:
        rec = _read_recipe(recipe)
        method = method or rec.get("method")
        opts.update(rec.get("options", {}))
        image_size = image_size or rec.get("image_size")
    method = method or "hadsell"
    named = dict(
        start=start,
        features=features,
        backbone=backbone,
        dim=dim,
        epochs=epochs,
        rounds=rounds,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
    )
    opts.update({k: v for k, v in named.items() if v is not None})
    opts["progress"] = progress
    opts.update(_parse_options(option or []))
    m = get_method(method, **opts)
    train_set = _load(data, image_size, data_root, on_error, per_class)
    eval_set = None
    if eval is not None:
        eval_set = _load(eval, image_size or train_set.image_size[0], data_root, on_error)
    console.print(
        f"[bold]{method}[/] on {train_set.name} ({len(train_set)} images), start={m.start}"
    )
    result = fit_run(m, train_set, out, eval_set=eval_set, overwrite=overwrite, resume=resume)
    from labelfree.train import distributed as dist

    if dist.rank() != 0:
        return
    from labelfree.frames.pipeline import FRAME_METRICS, is_frame_method

    if result and is_frame_method(m):
        print_metrics(result["representations"], f"{eval_set.name} (held out)", FRAME_METRICS)
    elif result:
        print_metrics(result["representations"], title=f"{eval_set.name} (held out)")
        console.print(f"report: {Path(out) / 'report.html'}")
    console.print(f"model: {Path(out) / 'model.pt'}")


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
    from labelfree.features.base import compute_features, get_extractor
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
        ext = m.extractor if name == m.features else get_extractor(name).fit(eval_set)
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


def _evaluate_exemplar(
    m: Any, eval_set: ImageSet, features: str, ltp: int, json_out: Path | None
) -> None:
    """The exemplar ROC-AUC protocol for the model and the initial features, image + mirror."""
    from labelfree.data.sequences import mirror_images
    from labelfree.evaluate.exemplar import exemplar_protocol
    from labelfree.features.base import compute_features, get_extractor

    mirrored = mirror_images(eval_set)
    # The protocol's queries and labelled frames depend on the data only (seed 0), never on the
    # model, so that two models are scored on the same exemplars.
    reps: dict[str, dict[str, float]] = {}
    for name in [f for f in features.split(",") if f]:
        ext = m.extractor if name == m.features else get_extractor(name).fit(eval_set)
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


@app.command()
def embed(
    model: ModelOpt,
    data: DataOpt,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output .npz (embeddings, labels, paths) or .npy (embeddings only)."
        ),
    ],
    image_size: ImageSizeOpt = None,
    data_root: RootOpt = None,
    on_error: OnErrorOpt = "fail",
) -> None:
    """Write the embeddings of DATA to a .npz or .npy file."""
    from labelfree.methods import load_model

    m = load_model(str(_model_path(model)))
    images = _load(
        data, image_size or (m.image_size[0] if m.image_size else None), data_root, on_error
    )
    z = m.embed(images)
    if out.suffix == ".npy":
        np.save(out, z)
    elif out.suffix == ".npz":
        np.savez(
            out,
            embeddings=z,
            labels=images.labels if images.labels is not None else np.array([]),
            paths=np.array(images.paths or [], dtype=str),
        )
    else:
        raise DataError(f"--out {out}: use a .npz or .npy file name")
    console.print(f"{z.shape[0]} × {z.shape[1]} embeddings → {out}")


@app.command()
def index(
    model: ModelOpt,
    data: DataOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Index folder to create (holds the model too).")
    ],
    kind: Annotated[str, typer.Option(help="flat (exact) | hnsw | ivf (approximate).")] = "flat",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index folder.")] = False,
    image_size: ImageSizeOpt = None,
    data_root: RootOpt = None,
    on_error: OnErrorOpt = "fail",
) -> None:
    """Embed DATA and build a search index in OUT (with a copy of the model)."""
    from labelfree.methods import load_model
    from labelfree.search.index import EmbeddingIndex

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"--out {out}: folder exists and is not empty; pass --overwrite")
    src = _model_path(model)
    m = load_model(str(src))
    images = _load(
        data, image_size or (m.image_size[0] if m.image_size else None), data_root, on_error
    )
    ids = images.paths or [f"{images.name}#{i}" for i in range(len(images))]
    z = m.embed(images)
    idx = EmbeddingIndex(z, paths=ids, labels=images.labels, kind=kind)
    idx.save(out)
    atomic_save_npy(out / "embeddings.npy", z)  # for `search --rerank diffusion`
    shutil.copyfile(src, out / "model.pt")
    console.print(f"indexed {len(images)} images → {out}")


@app.command()
def search(
    index_dir: Annotated[
        Path, typer.Option("--index", help="Folder written by `labelfree index`.")
    ],
    query: Annotated[
        list[Path],
        typer.Option("--query", "-q", help="Query image file(s); need not be in the index."),
    ],
    k: Annotated[int, typer.Option("-k", help="Neighbours per query.")] = 8,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    rerank: Annotated[
        str,
        typer.Option(
            help="none | diffusion: rank by diffusion on the mutual kNN graph of the indexed "
            "images, the query linked in through its nearest items (scores are then diffusion "
            "scores; the graph is built on the first use and kept in the index folder). "
            "roul: re-order the top results by a ROUL model's relative orders (cosine scores)."
        ),
    ] = "none",
) -> None:
    """Top-k most similar indexed images for each query image, with cosine scores."""
    from labelfree.data.decode import decode_image, resize_square
    from labelfree.methods import load_model
    from labelfree.search.index import EmbeddingIndex

    idx = EmbeddingIndex.load(index_dir)
    m = load_model(str(index_dir / "model.pt"))
    size = m.image_size[0] if m.image_size else 64
    imgs = np.stack([resize_square(decode_image(q), size) for q in query])
    q_emb = m.embed(ImageSet(imgs, name="query", paths=[str(q) for q in query]))
    scores, nbrs = idx.search(q_emb, k)
    if rerank == "diffusion":
        scores, nbrs = _diffusion_search(index_dir, q_emb, nbrs, k)
    elif rerank == "roul":
        from labelfree.evaluate.rerank import roul_search

        q_set = ImageSet(imgs, name="query", paths=[str(q) for q in query])
        scores, nbrs = roul_search(m, q_set, q_emb, idx, index_dir / "embeddings.npy", k)
    elif rerank != "none":
        raise DataError(f"--rerank {rerank!r}: choose none, diffusion or roul")
    results = [
        {
            "query": str(q),
            "results": [
                {"rank": r + 1, "score": float(s), "item": idx.paths[j] if idx.paths else int(j)}
                for r, (s, j) in enumerate(zip(srow, nrow, strict=True))
                if j >= 0
            ],
        }
        for q, srow, nrow in zip(query, scores, nbrs, strict=True)
    ]
    if json_out:
        print(json.dumps(results, indent=2))
        return
    for res in results:
        table = Table(title=f"query: {res['query']}")
        for c in ("rank", "score", "item"):
            table.add_column(c)
        for row in res["results"]:
            table.add_row(str(row["rank"]), f"{row['score']:.4f}", str(row["item"]))
        console.print(table)


def _diffusion_search(
    index_dir: Path, q_emb: np.ndarray, cosine_nbrs: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Diffusion ranking of the index for each query, completed by the cosine ranking."""
    import scipy.sparse as sp

    from labelfree.evaluate.rerank import merge_rankings
    from labelfree.graph.manifold import diffusion_rerank, mutual_knn_graph

    emb_path, graph_path = index_dir / "embeddings.npy", index_dir / "graph.npz"
    if not emb_path.exists():
        raise DataError(f"{index_dir}: no embeddings.npy; rebuild the index with `labelfree index`")
    db = np.load(emb_path)
    gk = min(30, (len(db) - 1) // 2)
    if graph_path.exists():
        graph = sp.load_npz(graph_path)
    else:
        graph = mutual_knn_graph(db, k=gk)
        sp.save_npz(graph_path, graph)
    d_scores, d_idx = diffusion_rerank(db, q_emb, k=gk, topk=k, graph=graph)
    ranked = merge_rankings(d_idx, cosine_nbrs, k)
    score_of = [dict(zip(r, s, strict=True)) for r, s in zip(d_idx, d_scores, strict=True)]
    scores = np.array(
        [[score_of[i].get(j, 0.0) for j in row] for i, row in enumerate(ranked)], dtype=np.float32
    )
    return scores, ranked


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder written by `labelfree fit --eval`.")
    ],
) -> None:
    """(Re)write the HTML report of a run from its files."""
    from labelfree.pipeline import load_metrics
    from labelfree.report.html import write_report

    load_metrics(run_dir)
    console.print(f"report: {write_report(run_dir)}")


@app.command()
def methods() -> None:
    """List the methods and their options."""
    from labelfree.methods import available_methods, get_method_class

    for name in available_methods():
        console.print(f"[bold]{name}[/]: {', '.join(get_method_class(name).option_names())}")


@app.command()
def datasets() -> None:
    """List the bundled and benchmark dataset names."""
    from labelfree.data.registry import available_datasets

    for name in available_datasets():
        console.print(name)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Demo folder (replaced if it holds an earlier demo).")
    ] = Path("demo-run"),
    epochs: Annotated[int, typer.Option(help="Epochs of the baseline per start.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the Hadsell baseline on mnist5k digits 0-4 (from scratch and from pretrained-style starts), evaluate on the unseen digits 5-9 and print the table beside pixels, HOG, HOG-LDA."""  # noqa: E501
    from labelfree.data.registry import load_data
    from labelfree.methods import get_method
    from labelfree.pipeline import fit_run

    marker = out / ".labelfree-demo"
    if out.exists() and any(out.iterdir()) and not marker.exists():
        raise DataError(f"--out {out}: folder exists and is not a labelfree demo; choose another")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker.touch()
    t0 = time.perf_counter()
    train_set, test_set = load_data("mnist5k:train"), load_data("mnist5k:test")
    console.print(
        f"demo: train on {train_set.name} ({len(train_set)} images, labels unused), "
        f"evaluate on {test_set.name} ({len(test_set)} images of unseen digits)"
    )
    table: dict[str, dict[str, float]] = {}
    for start in ("scratch", "distill", "feature-head"):
        m = get_method("hadsell", start=start, epochs=epochs, seed=seed, progress=progress)
        res = fit_run(m, train_set, out / start, eval_set=test_set)
        reps = res["representations"]
        if not table:
            table.update({k: v for k, v in reps.items() if k != "embedding"})
        table[f"hadsell ({start})"] = reps["embedding"]
        console.print(
            f"  {start}: fit {res['run']['fit_seconds']:.0f} s, report {out / start / 'report.html'}"
        )
    print_metrics(table, title="mnist5k digits 5-9 (held out), 500 images per class")
    console.print(f"total {time.perf_counter() - t0:.0f} s; reports under {out}/")


def main() -> None:
    try:
        app()
    except (DataError, CheckpointError, ValueError, FileNotFoundError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
