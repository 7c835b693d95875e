"""Benchmark: recall and speed of the approximate kinds of ``labelfree.search.EmbeddingIndex``.

    python benchmarks/bench_search.py [--sizes 2000 50000] [--d 32] [--queries 200] [--k 10]

For each N: N database and ``--queries`` query vectors, standard normal in ``--d`` dims (fixed
seed; isotropic data is the hard case for approximate search), indexed at the defaults of each
kind (``hnsw``: M = 32, efSearch = 128, efConstruction = 80; ``ivf``: nlist ≈ 4·√N, nprobe =
nlist / 8, where N allows it) and searched for the ``--k`` nearest. Baseline in the same run:
the exact ``flat`` index. Columns: build and query time, queries per second, recall@k (share of
the exact top k found), and the query-time ratio flat / kind (> 1: faster than exact).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, print_table  # noqa: E402
from labelfree.search import EmbeddingIndex  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 50000])
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()

    rows = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, args.d)).astype(np.float32)
        q = rng.standard_normal((args.queries, args.d)).astype(np.float32)
        exact = None
        flat_query_s = None
        for kind in ("flat", "hnsw", "ivf"):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ivf falls back to flat on small N
                index = EmbeddingIndex(x, kind=kind)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, idx = index.search(q, args.k)
            query = time.perf_counter() - t0
            if kind == "flat":
                exact, flat_query_s = idx, query
            recall = np.mean(
                [len(set(a) & set(b)) / args.k for a, b in zip(idx, exact, strict=True)]
            )
            rows.append(
                {
                    "N": n,
                    "kind": kind if index.kind == kind else f"{kind} (fell back to flat)",
                    "build s": round(build, 4),
                    "query s": round(query, 4),
                    "queries/s": round(args.queries / query, 1),
                    f"recall@{args.k}": round(float(recall), 4),
                    "flat / kind": round(flat_query_s / query, 2),
                }
            )
    print_table(
        rows,
        ["N", "kind", "build s", "query s", "queries/s", f"recall@{args.k}", "flat / kind"],
        f"EmbeddingIndex at its defaults, d = {args.d}, {args.queries} queries, k = {args.k}",
    )
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
