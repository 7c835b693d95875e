"""Benchmark: Mining-on-Manifolds mining speed and memory as N grows (seed 002 §3, DESIGN "Scale").

    python benchmarks/bench_mining.py [--sizes 10000 100000 1000000] [--anchors 1000]
    python benchmarks/bench_mining.py --pools    # pool quality on mnist5k, paper k vs rule

Data: N synthetic items in d = 128 (fixed seed), Gaussian clusters of ``--per`` = 50 points in a
32-d latent space (standard-normal centres, noise ``--noise`` = 0.8), mapped into 128-d by a
random orthonormal map plus 10 % ambient noise, rows shuffled so graph order is not cluster
order. Image descriptors have a low intrinsic dimension; isotropic 128-d noise is the worst
case for approximate search, see the note printed at the end.

Each N runs in a fresh subprocess (its ``ru_maxrss`` is that N's honest peak), timing:

- kNN graph (k = 30): exact faiss (``IndexFlatIP``) and approximate (HNSW, the default above
  50,000 items), with the approximate graph's recall@30 measured against exact search on
  1,000 items; exact is skipped (and extrapolated as O(N²)) where it would take too long.
- mutual graph + normalisation (from the default kNN graph),
- diffusion for ``--anchors`` anchors, topk = 100 (the manifold neighbours the k_neg = 100 pool
  needs), block CG; baseline: scipy.sparse.linalg.cg one anchor at a time on 16 anchors, and
  on those 16 the top-100 overlap of this default (20 float32 CG iterations, the authors' cap)
  with the converged float64 solution,
- diffusion for all N anchors: measured where it stays under ``--all-budget`` seconds
  (estimated from the 1,000-anchor run), otherwise extrapolated from the measured per-anchor
  cost and labelled as such,
- pools for the anchors: Euclidean k = 100 neighbours of the anchors + the set differences,
- the label-free pool-size rule (200 probes),
  (the CG baseline and the rule are skipped at N ≥ 10⁶ to bound the run time),
- set differences alone for 10⁵ anchors × 100 neighbours (vectorised pools).

Memory columns: ``py peak`` = tracemalloc peak during the stage (numpy/scipy buffers; faiss's
C++ allocations are not traced), ``rss`` = process peak RSS at the end of the stage.
The acceptance target is a 10⁵-item mining run (kNN graph + mutual graph + diffusion + pools
for 1,000 anchors) under 120 s; exit status 1 when it is measured and missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, print_table  # noqa: E402

TARGET_S = 120.0
LIGHT_FROM = 1_000_000  # from this N the optional stages (CG baseline, size rule) are skipped
K_GRAPH = 30
TOPK = 100


def make_data(
    n: int, d: int, per: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = 32
    n_clusters = max(1, n // per)
    centres = rng.standard_normal((n_clusters, latent), dtype=np.float32)
    labels = np.arange(n) % n_clusters
    z = centres[labels] + noise * rng.standard_normal((n, latent), dtype=np.float32)
    basis, _ = np.linalg.qr(rng.standard_normal((d, latent)).astype(np.float32))
    x = z @ basis.T
    x += 0.1 * noise * rng.standard_normal((n, d), dtype=np.float32)
    perm = rng.permutation(n)
    return np.ascontiguousarray(x[perm]), labels[perm]


class Stages:
    """Times a stage, its tracemalloc peak and the process peak RSS after it."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def run(self, name: str, fn, *args, **kwargs):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sec = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - before
        self.rows[name] = {"s": sec, "py_peak_mib": peak / 2**20, "rss_mib": peak_rss_mib()}
        print(f"  [{name}] {sec:.2f} s", file=sys.stderr, flush=True)
        return out


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(a) & set(b)) for a, b in zip(approx, exact, strict=True)]
    return float(np.mean(hits) / exact.shape[1])


def worker(args: argparse.Namespace) -> dict:
    import scipy.sparse as sp
    from scipy.sparse.linalg import cg

    from labelfree.graph.knn import knn
    from labelfree.graph.manifold import (
        APPROX_THRESHOLD,
        knn_graph,
        manifold_similarity,
        mutual_knn_graph,
        normalize_graph,
    )
    from labelfree.structure.pools import (
        euclidean_neighbours,
        negative_pool,
        pool_size_rule,
        positive_pool,
    )

    n = args.worker
    tracemalloc.start()
    base_rss = peak_rss_mib()
    x, labels = make_data(n, args.d, args.per, args.noise)
    data_rss = peak_rss_mib()
    st = Stages()
    info: dict = {"n": n, "base_rss_mib": base_rss, "data_rss_mib": data_rss, "notes": []}
    rng = np.random.default_rng(1)
    check = rng.choice(n, size=min(1000, n), replace=False)
    _, exact_check = knn(x, K_GRAPH, queries=x[check])  # includes self; compare as such below

    # ---- kNN graph: exact and approximate --------------------------------------------------
    default_approx = n > APPROX_THRESHOLD
    exact_est = args.exact_s_per_n2 * n * n if args.exact_s_per_n2 else None
    if exact_est is not None and exact_est > args.exact_budget:
        info["notes"].append(
            f"exact kNN skipped at N={n}: O(N²·d), extrapolated {exact_est:.0f} s from the "
            f"smaller run (> budget {args.exact_budget:.0f} s)"
        )
        info["exact_knn_extrapolated_s"] = exact_est
        exact = None
    else:
        exact = st.run("kNN exact", knn_graph, x, K_GRAPH, approximate=False)
        info["exact_s_per_n2"] = st.rows["kNN exact"]["s"] / (n * n)
    approx = st.run("kNN approx (HNSW)", knn_graph, x, K_GRAPH, approximate=True)
    # recall@30 of the approximate graph on the check items (self excluded on both sides)
    ref = np.array(
        [row[row != i][: K_GRAPH - 1] for row, i in zip(exact_check, check, strict=True)]
    )
    info["approx_recall"] = recall(approx[1][check][:, : K_GRAPH - 1], ref)
    sims, idx = approx if default_approx or exact is None else exact
    info["graph_from"] = "approximate" if default_approx or exact is None else "exact"
    del exact, approx

    # ---- mutual graph + normalisation ------------------------------------------------------
    def build_graph(table):
        a = mutual_knn_graph(None, K_GRAPH, neighbours=table)
        return a, normalize_graph(a)

    a, a_hat = st.run("mutual graph + normalise", build_graph, (sims, idx))
    info["graph_nnz"] = int(a.nnz)
    info["isolated"] = int((np.diff(a.indptr) == 0).sum())
    del sims, idx

    # ---- diffusion for the anchors ---------------------------------------------------------
    anchors = rng.choice(n, size=min(args.anchors, n), replace=False)
    ms, mi = st.run(
        f"diffusion {len(anchors)} anchors (topk={TOPK})",
        manifold_similarity,
        a_hat,
        anchors,
        topk=TOPK,
    )
    per_anchor = st.rows[f"diffusion {len(anchors)} anchors (topk={TOPK})"]["s"] / len(anchors)
    info["diffusion_per_anchor_s"] = per_anchor

    # baseline: one anchor at a time with scipy's CG (same tolerance and iteration cap)
    few = anchors[:16]
    op = sp.identity(n, dtype=a_hat.dtype, format="csr") - 0.99 * a_hat

    def one_at_a_time(op):
        out = np.empty((n, len(few)), dtype=np.float32)
        for c, i in enumerate(few):
            rhs = np.zeros(n, dtype=a_hat.dtype)
            rhs[i] = 0.01
            out[:, c], _ = cg(op, rhs, rtol=1e-6, maxiter=20)
        return out

    if n < LIGHT_FROM:
        single = st.run("diffusion 16 anchors, scipy cg one at a time", one_at_a_time, op)
        block16 = st.run(
            "diffusion 16 anchors, block CG", manifold_similarity, a_hat, few, block=16
        )
        info["cg_max_abs_diff"] = float(np.abs(single - block16).max())
        info["cg_max_abs"] = float(np.abs(single).max())
        del single, block16
        # ranking of the default cap (20 float32 CG iterations) against the converged float64
        # solution, same 16 anchors (not a timed stage)
        _, conv = manifold_similarity(
            a_hat.astype(np.float64), few, tol=1e-10, maxiter=1000, topk=TOPK
        )
        info["cap_topk_overlap"] = float(
            np.mean([len(set(r) & set(c)) / TOPK for r, c in zip(mi[:16], conv, strict=True)])
        )
        del conv
    else:
        info["notes"].append(f"N={n}: CG baseline and pool-size rule skipped to bound run time")
    del op

    # ---- diffusion for all anchors ---------------------------------------------------------
    est_all = per_anchor * n
    info["diffusion_all_estimate_s"] = est_all
    if est_all <= args.all_budget:
        st.run(
            f"diffusion all {n} anchors (topk={TOPK})",
            manifold_similarity,
            a_hat,
            np.arange(n),
            topk=TOPK,
        )
    else:
        info["notes"].append(
            f"diffusion of all {n} anchors not run: extrapolated {est_all:.0f} s "
            f"({per_anchor * 1e3:.1f} ms per anchor measured on {len(anchors)} anchors × N)"
        )

    # ---- pools for the anchors -------------------------------------------------------------
    def pools():
        es, ei = euclidean_neighbours(x, anchors, TOPK)
        pos = positive_pool(mi, ei, 50, 50, manifold_sims=ms)
        neg = negative_pool(ei, mi, 100, 50, euclid_sims=es)
        return pos, neg

    pos, neg = st.run(f"pools {len(anchors)} anchors (k 50/100)", pools)
    info["pos_len"] = float(pos.lengths.mean())
    info["neg_len"] = float(neg.lengths.mean())
    same = labels[np.where(pos.members >= 0, pos.members, 0)] == labels[anchors][:, None]
    info["pos_tp"] = float(same[pos.members >= 0].mean()) if (pos.members >= 0).any() else None
    diff = labels[np.where(neg.members >= 0, neg.members, 0)] != labels[anchors][:, None]
    info["neg_tn"] = float(diff[neg.members >= 0].mean()) if (neg.members >= 0).any() else None

    if n < LIGHT_FROM:
        info["rule"] = st.run("pool-size rule (200 probes)", pool_size_rule, a)

    # ---- vectorised set differences at 10^5 anchors × 100 ----------------------------------
    if n >= 100_000:
        big = 100_000
        m_tab = rng.integers(0, n, size=(big, TOPK))
        e_tab = np.where(
            rng.random((big, TOPK)) < 0.5, m_tab[:, ::-1], rng.integers(0, n, (big, TOPK))
        )

        def set_differences():
            return positive_pool(m_tab, e_tab, 50, 50), negative_pool(e_tab, m_tab, 100, 50)

        st.run("set differences 10⁵ anchors × 100", set_differences)

    mining = ["mutual graph + normalise", f"diffusion {len(anchors)} anchors (topk={TOPK})"]
    mining.append(f"pools {len(anchors)} anchors (k 50/100)")
    graph_stage = "kNN approx (HNSW)" if info["graph_from"] == "approximate" else "kNN exact"
    info["mining_s"] = st.rows[graph_stage]["s"] + sum(st.rows[s]["s"] for s in mining)
    info["n_anchors"] = len(anchors)
    # Per-anchor stages scaled to --target-anchors (used when fewer anchors were run).
    per_anchor_total = sum(st.rows[s]["s"] for s in mining[1:]) / len(anchors)
    info["mining_s_extrapolated"] = (
        st.rows[graph_stage]["s"] + st.rows[mining[0]]["s"] + per_anchor_total * args.target_anchors
    )
    info["peak_rss_mib"] = peak_rss_mib()
    info["stages"] = st.rows
    return info


def pool_quality() -> None:
    """TP rate of P⁺ and TN rate of P⁻ on mnist5k digits 0–4 (HOG-LDA features), every item an
    anchor, with seed 002's k = 50 / 100 and with :func:`pool_size_rule`, at 500 and 50 per
    class (METHODS.md §0). Labels are used only to score the pools."""
    from labelfree.data import load_data
    from labelfree.features.base import compute_features
    from labelfree.features.registry import get_extractor
    from labelfree.graph.manifold import mutual_knn_graph, normalize_graph
    from labelfree.structure.pools import mine_pools, pool_rates, pool_size_rule

    rows = []
    for per_class in (500, 50):
        ds = load_data("mnist5k:train", per_class=per_class if per_class < 500 else None)
        y = compute_features(get_extractor("hog-lda").fit(ds), ds)
        a = mutual_knn_graph(y, K_GRAPH)
        a_hat = normalize_graph(a)
        anchors = np.arange(len(y))
        t0 = time.perf_counter()
        rule = pool_size_rule(a)
        rule_s = time.perf_counter() - t0
        deg = np.asarray(a.sum(axis=1)).ravel()
        for name, (k_pos, k_neg), degrees in (
            ("seed 002", (50, 100), None),
            ("rule", rule, None),
            ("rule, f/√d ranking", rule, deg),
        ):
            pos, neg = mine_pools(y, a_hat, anchors, k_pos=k_pos, k_neg=k_neg, degrees=degrees)
            rows.append(
                {
                    "per class": per_class,
                    "N": len(y),
                    "k from": name,
                    "k_pos": k_pos,
                    "k_neg": k_neg,
                    "P+ TP": pool_rates(pos.members, pos.lengths, anchors, ds.labels),
                    "P+ size": float(pos.lengths.mean()),
                    "P- TN": pool_rates(
                        neg.members, neg.lengths, anchors, ds.labels, positive=False
                    ),
                    "P- size": float(neg.lengths.mean()),
                    "rule s": rule_s if name == "rule" else None,
                }
            )
    print_table(
        rows,
        [
            "per class",
            "N",
            "k from",
            "k_pos",
            "k_neg",
            "P+ TP",
            "P+ size",
            "P- TN",
            "P- size",
            "rule s",
        ],
        "Pool quality, mnist5k digits 0–4, HOG-LDA, mutual kNN k = 30, all items anchors "
        "(seed 002 on CUB: TP 0.40, TN 0.96)",
    )


def fit_exponent(ns: list[int], values: list[float]) -> float | None:
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pts) < 2:
        return None
    xs, ys = zip(*pts, strict=True)
    return float(np.polyfit(xs, ys, 1)[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--per", type=int, default=50)
    p.add_argument("--noise", type=float, default=0.8)
    p.add_argument("--anchors", type=int, default=1000)
    p.add_argument(
        "--anchors-large",
        type=int,
        default=128,
        help="anchors at N ≥ 10⁶ (cost extrapolated to --anchors, labelled)",
    )
    p.add_argument("--exact-budget", type=float, default=200.0)
    p.add_argument("--all-budget", type=float, default=180.0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per N")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--target-anchors", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--exact-s-per-n2", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--pools", action="store_true", help="pool quality on mnist5k and exit")
    args = p.parse_args()
    if args.pools:
        pool_quality()
        return 0
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0

    results = []
    exact_rate = None
    for n in sorted(args.sizes):
        need_gib = n * args.d * 4 * 12 / 2**30  # features, index, kNN table, CG blocks (measured ~)
        if need_gib > 20:
            print(f"N={n}: skipped, needs about {need_gib:.0f} GiB > 20 GiB available\n")
            continue
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            str(n),
            "--d",
            str(args.d),
            "--per",
            str(args.per),
            "--noise",
            str(args.noise),
            "--anchors",
            str(args.anchors if n < 1_000_000 else args.anchors_large),
            "--exact-budget",
            str(args.exact_budget),
            "--all-budget",
            str(args.all_budget),
            "--target-anchors",
            str(args.anchors),
        ]
        if exact_rate:
            cmd += ["--exact-s-per-n2", str(exact_rate)]
        print(f"N={n}: running in a subprocess ...", file=sys.stderr, flush=True)
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.timeout, env={**os.environ}
            )
        except subprocess.TimeoutExpired as e:
            done = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            print(f"N={n}: stopped after {args.timeout:.0f} s; stages finished before that:")
            print(done)
            continue
        sys.stderr.write(out.stderr)
        if out.returncode != 0:
            print(f"N={n}: worker failed (exit {out.returncode})\n")
            continue
        info = json.loads(out.stdout.strip().splitlines()[-1])
        exact_rate = info.get("exact_s_per_n2", exact_rate)
        results.append(info)

        rows = [{"stage": name, **vals} for name, vals in info["stages"].items()]
        print_table(
            rows,
            ["stage", "s", "py_peak_mib", "rss_mib"],
            f"N = {n:,} (d = {args.d}, clusters of {args.per}; baseline RSS "
            f"{info['base_rss_mib']:.0f} MiB, after data {info['data_rss_mib']:.0f} MiB)",
        )
        stages = info["stages"]
        comp = []
        if "kNN exact" in stages:
            comp.append(
                {
                    "figure": "kNN graph k=30: HNSW vs exact (s)",
                    "value": stages["kNN approx (HNSW)"]["s"],
                    "baseline": stages["kNN exact"]["s"],
                    "ratio": stages["kNN exact"]["s"] / stages["kNN approx (HNSW)"]["s"],
                }
            )
        comp.append({"figure": "HNSW recall@30 vs exact", "value": info["approx_recall"]})
        if "cg_max_abs" in info:
            s1 = stages["diffusion 16 anchors, scipy cg one at a time"]["s"]
            sb = stages["diffusion 16 anchors, block CG"]["s"]
            comp.append(
                {
                    "figure": "16 anchors: block CG vs scipy cg one by one (s)",
                    "value": sb,
                    "baseline": s1,
                    "ratio": s1 / sb,
                }
            )
            comp.append(
                {
                    "figure": "  max |block − scipy| / max f",
                    "value": info["cg_max_abs_diff"] / info["cg_max_abs"],
                }
            )
            comp.append(
                {
                    "figure": f"20-iteration float32 diffusion: top-{TOPK} overlap with converged",
                    "value": info["cap_topk_overlap"],
                }
            )
        comp.append(
            {"figure": "diffusion per anchor (ms)", "value": 1e3 * info["diffusion_per_anchor_s"]}
        )
        all_name = f"diffusion all {n} anchors (topk={TOPK})"
        if all_name in stages:
            comp.append(
                {
                    "figure": f"diffusion all {n:,} anchors (s, measured)",
                    "value": stages[all_name]["s"],
                }
            )
        else:
            comp.append(
                {
                    "figure": f"diffusion all {n:,} anchors (s, EXTRAPOLATED)",
                    "value": info["diffusion_all_estimate_s"],
                }
            )
        comp.append(
            {
                "figure": f"mining run: graph + {info['n_anchors']} anchors (s)",
                "value": info["mining_s"],
            }
        )
        if info["n_anchors"] < args.anchors:
            comp.append(
                {
                    "figure": f"mining run: graph + {args.anchors} anchors (s, EXTRAPOLATED)",
                    "value": info["mining_s_extrapolated"],
                }
            )
        comp.append(
            {
                "figure": "pools (k 50/100): P+ TP / P- TN",
                "value": f"{info['pos_tp']:.3f} / {info['neg_tn']:.3f}",
            }
        )
        if "rule" in info:
            comp.append(
                {"figure": "pool-size rule (k_pos, k_neg)", "value": str(tuple(info["rule"]))}
            )
        comp.append({"figure": "mutual graph entries / N", "value": info["graph_nnz"] / n})
        print_table(comp, ["figure", "value", "baseline", "ratio"], f"N = {n:,}: comparisons")
        for note in info["notes"]:
            print("note:", note)
        print()

    if not results:
        return 1
    ns = [r["n"] for r in results]
    growth = []
    names = sorted(
        {s for r in results for s in r["stages"]},
        key=lambda s: list(results[0]["stages"]).index(s) if s in results[0]["stages"] else 99,
    )
    for name in names:
        have = [(r["n"], r["stages"][name]) for r in results if name in r["stages"]]
        if len(have) < 2:
            continue
        growth.append(
            {
                "stage": name,
                "N": ", ".join(f"{n:.0e}" for n, _ in have),
                "time exponent": fit_exponent([n for n, _ in have], [v["s"] for _, v in have]),
                "py-peak exponent": fit_exponent(
                    [n for n, _ in have], [v["py_peak_mib"] for _, v in have]
                ),
            }
        )
    growth.append(
        {
            "stage": "peak RSS above baseline",
            "N": ", ".join(f"{n:.0e}" for n in ns),
            "time exponent": None,
            "py-peak exponent": fit_exponent(
                ns, [r["peak_rss_mib"] - r["base_rss_mib"] for r in results]
            ),
        }
    )
    print_table(
        growth,
        ["stage", "N", "time exponent", "py-peak exponent"],
        "Growth in N: fitted exponent p of cost ∝ N^p (least squares on log–log)",
    )
    rc = 0
    for r in results:
        if r["n"] == 100_000:
            ok = r["mining_s"] <= TARGET_S
            print(
                f"Acceptance: 10⁵-item mining run {r['mining_s']:.1f} s "
                f"({'within' if ok else 'OVER'} the {TARGET_S:.0f} s target)"
            )
            rc = 0 if ok else 1
    print(
        "Note: the data have a 32-d intrinsic dimension. On isotropic 128-d Gaussian clusters "
        "approximate search loses much more recall at the same settings (HNSW and IVF), so "
        "check the recall row on your own features."
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
