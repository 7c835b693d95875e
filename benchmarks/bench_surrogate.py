"""CliqueCNN and Posets (seed 001 Ch.3, seed 000 §3) beside g(x) and the Hadsell baseline.

Rows: hadsell, cliquecnn with its defaults, cliquecnn with each term of Eq. 3.1 dropped
(similarity, per-batch coverage λ₁, total coverage λ₂), posets with Z = 1 and Z = 2; each from
scratch and from the distilled (pretrained-style) start, on mnist5k (train 0-4, test 5-9) and
digits, MAP@R / R@1 / NMI on the held-out classes, mean ± std over seeds. TP is the purity of
the cliques / surrogate classes (share of same-label pairs), TN for CliqueCNN the share of
different-label pairs across cliques of one batch (diagnostics only).

    python benchmarks/bench_surrogate.py [--datasets mnist5k,digits] [--seeds 0,1,2] [--epochs 10]
                                         [--rows "hadsell,cliquecnn,posets Z=2"]
    python benchmarks/bench_surrogate.py --grouping-scale [--n 100000] [--d 128]

``--grouping-scale`` times the grouping of N synthetic items (the Gaussian mixture of
bench_mining.py: 32-d latent clusters of 50 items mapped to d dims): CliqueCNN cliques, its
CCCP batch selection (B = 100, r = 20), and Posets' grouping, with the peak memory.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mib, print_table  # noqa: E402

ROWS = [
    ("hadsell", "hadsell", {}),
    ("cliquecnn", "cliquecnn", {}),
    ("cliquecnn -similarity", "cliquecnn", {"similarity_term": False}),
    ("cliquecnn -batch coverage", "cliquecnn", {"lambda1": 0.0}),
    ("cliquecnn -total coverage", "cliquecnn", {"lambda2": 0.0}),
    ("posets Z=1", "posets", {"n_nearest": 1}),
    ("posets Z=2", "posets", {"n_nearest": 2}),
]


def grouping_scale(n: int, d: int, seed: int = 0) -> None:
    from bench_mining import make_data
    from labelfree.graph.knn import l2_normalize
    from labelfree.structure.clique_batches import clique_means, solve_batches
    from labelfree.structure.cliques import build_cliques

    x, labels = make_data(n, d, per=50, noise=0.8, seed=seed)
    rows = []

    def stage(name, fn):
        tracemalloc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append(
            {
                "stage": name,
                "seconds": round(secs, 1),
                "CPU s": round(cpu, 1),
                "python peak MiB": round(peak, 0),
                "RSS peak MiB": round(peak_rss_mib(), 0),
            }
        )
        print(f"  {name}: {secs:.1f} s ({cpu:.1f} s CPU)", flush=True)
        return out

    cl = stage("cliquecnn cliques (k=10, dot)", lambda: build_cliques(x, 10, "dot", min_size=3))
    xn = l2_normalize(x)
    c = cl.assignment()
    z, trace = stage(
        "cliquecnn batches (CCCP, B=100, r=20)",
        lambda: solve_batches(c, 100, 20, np.random.default_rng(seed), means=clique_means(xn, c)),
    )
    covered = int(((np.asarray(z.sum(0)) @ c) > 0).sum())
    distinct = int((np.asarray(z.sum(0)) > 0).sum())
    print(f"  batches: {distinct} distinct cliques of {len(cl)}, cover {covered} of {n} items")
    posets = stage(
        "posets grouping (k=64, exp(-dist))",
        lambda: build_cliques(x, 64, "expdist", min_size=4),
    )
    purity = np.mean([np.bincount(labels[m]).max() / len(m) for m in cl.members])
    title = (
        f"grouping {n} items, d={d} (mixture of {n // 50} clusters): {len(cl)} cliques "
        f"(mean size {np.mean([len(m) for m in cl.members]):.1f}, majority purity {purity:.3f}), "
        f"batches cover {covered} items, CCCP objective {trace[0]:.4g} -> {trace[-1]:.4g} in "
        f"{len(trace) - 1} iterations; posets {len(posets)} groups"
    )
    print_table(rows, ["stage", "seconds", "CPU s", "python peak MiB", "RSS peak MiB"], title)


if __name__ == "__main__":
    if "--grouping-scale" in sys.argv:
        ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        ap.add_argument("--grouping-scale", action="store_true")
        ap.add_argument("--n", type=int, default=100_000)
        ap.add_argument("--d", type=int, default=128)
        a = ap.parse_args()
        grouping_scale(a.n, a.d)
    else:
        from bench_quality import main

        rows = ROWS
        if "--rows" in sys.argv:  # a subset of the rows by label, e.g. --rows hadsell,cliquecnn
            i = sys.argv.index("--rows")
            wanted = sys.argv[i + 1].split(",")
            del sys.argv[i : i + 2]
            rows = [r for r in ROWS if r[0] in wanted]
        # This benchmark's defaults; flags given on the command line come later and win.
        sys.argv[1:1] = ["--datasets", "mnist5k,digits", "--starts", "scratch,distill"]
        sys.argv[1:1] = ["--out", "bench-out/surrogate.json"]
        main(rows, __doc__)
