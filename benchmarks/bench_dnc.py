"""Divide & Conquer's ablation (seed 001 Table 2.6) on held-out classes, and its reclustering cost.

Rows, each with K = 4 learners unless said: the baseline (K = 1, one learner on all data), a
random partition of the data among the learners, k-means clusters that all train the full
embedding (no splitting), and full D&C — once on the training labels (the thesis's supervised
setting) and once on k-means pseudo-classes of g(x) (label-free). The thesis's SOP ordering is
baseline 72.7 < random 73.2 < k-means without splitting 75.0 < full 75.9 (R@1).

The cost column is a reclustering (embed every training image — or, by default, reuse the
embeddings of the training batches — + k-means + Hungarian matching, from the training log)
divided by a training epoch; per epoch it is half that at T = 2. "purity" is the share of
training items whose (pseudo-)class's majority label is their own (1 for the labels).

    python benchmarks/bench_dnc.py [--datasets mnist-numbers] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mib, print_table  # noqa: E402
from bench_quality import METRICS, fit_and_score, load_split, mean_std, recorder  # noqa: E402

ABLATION = [
    ("baseline (K=1)", {"learners": 1}),
    ("random partition", {"partition": "random"}),
    ("k-means, no split", {"split": False}),
    ("full D&C", {}),
    ("full D&C, recluster by a pass", {"reembed": "pass"}),
]
#: Label-free only: pseudo-classes from another structure step (CliqueCNN's cliques of g(x)).
UNSUPERVISED_ONLY = [("full D&C, clique targets", {"targets": "cliques"})]


def recluster_share(history: list[dict]) -> float:
    """Mean (embed + cluster + match) seconds of the k-means rounds after the first, over the
    mean training epoch's seconds; NaN when no such round ran."""
    rounds = [
        h["structure/embed_seconds"] + h["structure/structure_seconds"]
        for h in history
        if h["stage"] == "dnc"
        and h["epoch"] == 0
        and h["round"] > 0
        and h.get("structure/learner_stability") == h.get("structure/learner_stability")  # not NaN
    ]
    epochs = [h["seconds"] for h in history if h["stage"] == "dnc"]
    return float(np.mean(rounds) / np.mean(epochs)) if rounds else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist-numbers")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", default="distill")
    ap.add_argument("--out", default="bench-out/dnc.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out, t_all = [], time.perf_counter()
    for name in args.datasets.split(","):
        train, test = load_split(name)
        results, record = recorder()
        for targets in ("labels", "kmeans"):
            rows = ABLATION + (UNSUPERVISED_ONLY if targets == "kmeans" else [])
            for label, opts in rows:
                row = f"{label}, {'supervised' if targets == 'labels' else 'pseudo-classes'}"
                for s in seeds:
                    m, _, res = fit_and_score(
                        "dnc", args.start, None, s, {"targets": targets, **opts}, train, test
                    )
                    res["recluster / epoch"] = recluster_share(m.history_)
                    first = next(h for h in m.history_ if h["stage"] == "dnc")
                    res["purity"] = first.get("structure/pseudo_purity", float("nan"))
                    record(row, res)
                    print(f"  {name} {row} seed {s}: MAP@R {res['MAP@R']:.3f}", flush=True)
        base = {
            t: np.mean(results[f"baseline (K=1), {t}"]["R@1"])
            for t in ("supervised", "pseudo-classes")
        }
        table = []
        for row, vals in results.items():
            kind = row.rsplit(", ", 1)[1]
            table.append(
                {
                    "row": row,
                    **{m: mean_std(vals[m]) for m in METRICS},
                    "R@1 / baseline": round(float(np.mean(vals["R@1"]) / base[kind]), 3),
                    "purity": round(float(np.nanmean(vals["purity"])), 3),
                    "recluster / epoch": round(float(np.nanmean(vals["recluster / epoch"])), 3)
                    if not np.all(np.isnan(vals["recluster / epoch"]))
                    else "-",
                    "fit s": round(float(np.mean(vals["fit s"])), 1),
                }
            )
        title = (
            f"D&C ablation on {name}: train {train.name} ({len(train)} images) -> held-out "
            f"{test.name} ({len(np.unique(test.labels))} unseen classes); {len(seeds)} seeds, "
            f"start {args.start}"
        )
        cols = ["row", *METRICS, "R@1 / baseline", "purity", "recluster / epoch", "fit s"]
        print_table(table, cols, title)
        out += [{"dataset": name, **r} for r in table]
    print(f"total {time.perf_counter() - t_all:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
