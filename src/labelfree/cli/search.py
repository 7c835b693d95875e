"""`labelfree embed`, `index` and `search`: embeddings and a search index of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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
)
from labelfree.data.imageset import DataError, ImageSet


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
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Write the embeddings of DATA to a .npz or .npy file (atomically)."""
    import io

    from labelfree.methods import load_model
    from labelfree.utils import atomic_write_bytes

    if out.suffix not in (".npy", ".npz"):
        raise DataError(f"--out {out}: use a .npz or .npy file name")
    if out.exists() and not overwrite:
        raise DataError(f"--out {out}: file exists; pass --overwrite to replace it")
    if out.is_dir():
        raise DataError(f"--out {out}: is a folder; give a .npz or .npy file name")
    m = load_model(str(_model_path(model)))
    images = _load(
        data, image_size or (m.image_size_[0] if m.image_size_ else None), data_root, on_error
    )
    z = m.embed(images)
    buf = io.BytesIO()
    if out.suffix == ".npy":
        np.save(buf, z)
    else:
        np.savez(
            buf,
            embeddings=z,
            labels=images.labels if images.labels is not None else np.array([]),
            paths=np.array(images.paths or [], dtype=str),
        )
    atomic_write_bytes(out, buf.getvalue())
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
    from labelfree.search.index import EmbeddingIndex, save_index_folder

    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"--out {out}: folder exists and is not empty; pass --overwrite")
    src = _model_path(model)
    m = load_model(str(src))
    images = _load(
        data, image_size or (m.image_size_[0] if m.image_size_ else None), data_root, on_error
    )
    ids = images.paths or [f"{images.name}#{i}" for i in range(len(images))]
    z = m.embed(images)
    idx = EmbeddingIndex(z, paths=ids, labels=images.labels, kind=kind)
    # All or nothing: built in a sibling folder and swapped in (embeddings.npy serves
    # `search --rerank diffusion`; model.pt embeds the queries).
    save_index_folder(out, idx, embeddings=z, model_file=src)
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
    size = m.image_size_[0] if m.image_size_ else 64
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
