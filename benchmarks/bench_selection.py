"""Can a label-free criterion pick the epoch to keep? And what do labels of the seen classes give?

After every fine-tuning epoch (distilled start, mnist5k digits 0-4 — or another benchmark set
with ``--dataset`` — labels unused) this prints the held-out MAP@R on the unseen classes beside
label-free criteria computed on the training images only (the candidates for model selection,
issue 13):

- ``purity@K``: share of each item's 10 nearest neighbours in the embedding that lie among its
  K manifold neighbours of g(x) (K = the class scale of the pool rule);
- ``agree m10``: overlap of the embedding's 10-NN with g(x)'s 10 manifold nearest neighbours;
- ``keep e10``: overlap with g(x)'s own 10-NN (how much of the start's neighbourhoods is kept);
- ``train MAP@R``: the seen classes *with* labels (diagnostic: what specialisation looks like).

``--oracle`` adds the ceiling of this protocol: the ``diffusion`` method with the true labels of
the training digits as its targets (supervised contrastive learning on the seen classes).

    python benchmarks/bench_selection.py [--methods mom,hadsell,diffusion] [--seeds 0] [--epochs 6] [--oracle]
        [--dataset mnist5k|mnist5k-50|digits|mnist-numbers]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402
from bench_quality import load_split  # noqa: E402
from labelfree.evaluate.metrics import evaluate_embeddings  # noqa: E402
from labelfree.features.base import compute_features  # noqa: E402
from labelfree.graph.knn import knn  # noqa: E402
from labelfree.graph.manifold import (  # noqa: E402
    knn_graph,
    manifold_similarity,
    mutual_knn_graph,
    normalize_graph,
)
from labelfree.methods import get_method  # noqa: E402
from labelfree.methods.diffusion import Diffusion  # noqa: E402
from labelfree.structure.pools import pool_size_rule  # noqa: E402


class LabelTargets(Diffusion):
    """The oracle: the diffusion method's loss with same-label targets (never label-free)."""

    def structure(self, reps, round_idx, ctx=None):
        s = super().structure(reps, round_idx, ctx)
        y = self._labels
        same = (y[:, None] == y[None, :]).astype(np.float32)
        np.fill_diagonal(same, 0)
        s.targets = sp.csr_matrix(same)
        k = int(np.bincount(y).min()) - 1
        s.idx = np.stack(
            [np.flatnonzero((y == y[i]) & (np.arange(len(y)) != i))[:k] for i in range(len(y))]
        )
        s.lengths = np.full(len(y), k)
        return s


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |a_i ∩ b_i| / width of a (−1 entries ignored)."""
    return float(
        np.mean([np.intersect1d(x, y[y >= 0]).size for x, y in zip(a, b, strict=True)]) / a.shape[1]
    )


def references(g: np.ndarray) -> dict[str, np.ndarray]:
    graph = mutual_knn_graph(None, k=30, neighbours=knn_graph(g, 30))
    a_hat = normalize_graph(graph)
    k = pool_size_rule(graph)[0]
    return {
        "K": manifold_similarity(a_hat, np.arange(len(g)), topk=k)[1],
        "m10": manifold_similarity(a_hat, np.arange(len(g)), topk=10)[1],
        "e10": knn(g, 11)[1][:, 1:],
    }


def curve(method, label: str, seed: int, epochs: int, train, test, rows: list) -> None:
    ref: dict[str, np.ndarray] = {}

    def on_epoch(rec: dict) -> None:
        if rec["stage"] != method.name:
            return
        if not ref:
            ref.update(references(compute_features(method.extractor_, train)))
        z_tr, z_te = method.embed(train), method.embed(test)
        nn = knn(z_tr, 11)[1][:, 1:]
        rows.append(
            {
                "row": label,
                "seed": seed,
                "epoch": rec["epoch"] + 1,
                "held-out MAP@R": evaluate_embeddings(z_te, test.labels, seed=seed)["MAP@R"],
                "purity@K": float(
                    np.mean([np.isin(nn[i], ref["K"][i]).mean() for i in range(len(nn))])
                ),
                "agree m10": overlap(nn, ref["m10"]),
                "keep e10": overlap(nn, ref["e10"]),
                "train MAP@R": evaluate_embeddings(z_tr, train.labels, seed=seed)["MAP@R"],
            }
        )
        print(
            f"  {label} seed {seed} epoch {rec['epoch'] + 1}: {rows[-1]['held-out MAP@R']:.3f}",
            flush=True,
        )

    method.fit(train, on_epoch_end=on_epoch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="mom,hadsell,diffusion")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--oracle", action="store_true", help="add the label-target ceiling")
    ap.add_argument("--dataset", default="mnist5k", help="a bench_quality dataset name")
    args = ap.parse_args()
    train, test = load_split(args.dataset)
    rows: list[dict] = []
    for s in (int(x) for x in args.seeds.split(",")):
        for name in args.methods.split(","):
            m = get_method(name, epochs=args.epochs, seed=s, progress=False)
            curve(m, name, s, args.epochs, train, test, rows)
        if args.oracle:
            m = LabelTargets.from_options(epochs=args.epochs, seed=s, progress=False)
            curve(m, "labels of 0-4 (oracle)", s, args.epochs, train, test, rows)
    cols = [
        "row",
        "seed",
        "epoch",
        "held-out MAP@R",
        "purity@K",
        "agree m10",
        "keep e10",
        "train MAP@R",
    ]
    print_table(
        rows,
        cols,
        f"Per-epoch held-out quality vs label-free selection criteria ({args.dataset}, distilled start)",
    )


if __name__ == "__main__":
    main()
