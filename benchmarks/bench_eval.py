"""Benchmark: labelfree's retrieval metrics against pytorch-metric-learning's AccuracyCalculator.

    python benchmarks/bench_eval.py [--n 60000 --d 128 --classes 100 --noise 2.0]

Generates ``n`` clustered embeddings (``classes`` equal Gaussian clusters around random centres,
isotropic noise of standard deviation ``noise`` per dimension, fixed seed), then computes
R@1, R-precision and MAP@R leave-one-out with ``labelfree.evaluate.retrieval_metrics`` and with
pml's ``AccuracyCalculator`` (k = "max_bin_count", exact faiss inner-product kNN on the same
L2-normalised vectors), checks the values agree to 1e-6 and times both.

pml's full-ranking mAP needs k = N − 1 neighbours for every query (an N × N result), which is
out of reach at N = 60,000, so mAP is compared on a random subsample (``--map-subsample``,
0 to skip) where both compute it over the full ranking.

Exit status 1 when any value differs by more than the tolerance.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN

from labelfree.evaluate.metrics import l2_normalize, retrieval_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, print_table  # noqa: E402

TOL = 1e-6
PML_NAMES = {
    "R@1": "precision_at_1",
    "R-precision": "r_precision",
    "MAP@R": "mean_average_precision_at_r",
    "mAP": "mean_average_precision",
}


def make_data(
    n: int, d: int, n_classes: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points in ``n_classes`` equal Gaussian clusters (labels repeat 0..C-1 in blocks)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), int(np.ceil(n / n_classes)))[:n]
    centres = rng.standard_normal((n_classes, d)).astype(np.float32)
    x = centres[labels] + noise * rng.standard_normal((n, d)).astype(np.float32)
    return x.astype(np.float32), labels


def run_pml(x: np.ndarray, labels: np.ndarray, metrics: list[str], k: str | None) -> dict:
    """pml's values for ``metrics`` (our names), leave-one-out on the same normalised vectors."""
    calc = AccuracyCalculator(
        include=tuple(PML_NAMES[m] for m in metrics),
        exclude=(),
        k=k,
        knn_func=FaissKNN(index_init_fn=faiss.IndexFlatIP),
        device=torch.device("cpu"),
    )
    # reference=None: pml searches the queries themselves and drops each query's own index.
    res = calc.get_accuracy(l2_normalize(x), labels)
    return {m: float(res[PML_NAMES[m]]) for m in metrics}


def compare(
    ours: dict, theirs: dict, metrics: list[str], suffix: str = ""
) -> tuple[list[dict], list[str]]:
    """Table rows metric | ours | pml | |diff| | equal?, and the names that differ."""
    rows, bad = [], []
    for m in metrics:
        diff = abs(ours[m] - theirs[m])
        ok = diff <= TOL
        rows.append(
            {"metric": m + suffix, "ours": ours[m], "pml": theirs[m], "|diff|": diff, "equal?": ok}
        )
        if not ok:
            bad.append(m + suffix)
    return rows, bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--noise", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--map-subsample", type=int, default=4000)
    args = p.parse_args(argv)

    x, labels = make_data(args.n, args.d, args.classes, args.noise, args.seed)
    print(
        f"data: {args.n} x {args.d} float32, {args.classes} classes of ~{args.n // args.classes}, "
        f"noise {args.noise}, seed {args.seed}; faiss threads {faiss.omp_get_max_threads()}"
    )
    metrics = ["R@1", "R-precision", "MAP@R"]

    t0 = time.perf_counter()
    ours = retrieval_metrics(x, labels, ks=(1,), normalize=True, map_full=False)
    t_ours = time.perf_counter() - t0
    rss_ours = peak_rss_mib()
    print(f"ours: {t_ours:.1f} s, peak RSS so far {rss_ours:.0f} MiB")

    t0 = time.perf_counter()
    theirs = run_pml(x, labels, metrics, k="max_bin_count")
    t_pml = time.perf_counter() - t0
    rss_pml = peak_rss_mib()
    print(f"pml:  {t_pml:.1f} s, peak RSS so far {rss_pml:.0f} MiB")

    rows, bad = compare(ours, theirs, metrics)
    timing = [
        {
            "task": f"R@1, R-prec, MAP@R (N={args.n})",
            "figure (ours s)": t_ours,
            "baseline (pml s)": t_pml,
            "ratio": t_ours / t_pml,
        }
    ]

    if args.map_subsample > 0:
        m = min(args.map_subsample, args.n)
        sub = np.sort(np.random.default_rng(args.seed + 1).choice(args.n, m, replace=False))
        xs, ls = x[sub], labels[sub]
        t0 = time.perf_counter()
        ours_s = retrieval_metrics(xs, ls, ks=(1,), normalize=True, map_full=True)
        t_ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        theirs_s = run_pml(xs, ls, [*metrics, "mAP"], k=None)
        t_pml_s = time.perf_counter() - t0
        sub_rows, sub_bad = compare(ours_s, theirs_s, [*metrics, "mAP"], suffix=f" (N={m})")
        rows += sub_rows
        bad += sub_bad
        timing.append(
            {
                "task": f"+ full-ranking mAP (N={m})",
                "figure (ours s)": t_ours_s,
                "baseline (pml s)": t_pml_s,
                "ratio": t_ours_s / t_pml_s,
            }
        )

    print_table(rows, ["metric", "ours", "pml", "|diff|", "equal?"], "Values (tolerance 1e-6)")
    print_table(timing, ["task", "figure (ours s)", "baseline (pml s)", "ratio"], "Timings")
    print(f"peak RSS: {rss_ours:.0f} MiB after ours, {rss_pml:.0f} MiB after pml (N={args.n})")
    if bad:
        print(f"MISMATCH beyond {TOL}: {', '.join(bad)}")
        return 1
    print("all values equal within 1e-6")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
