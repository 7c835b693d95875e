"""ROUL (seed 003): the ablation of its Table 4 on the bundled data, with and without re-ranking.

Rows, each from scratch and from the pretrained-style (distilled) start, mean ± std over seeds:
g(x) (HOG-LDA), the Hadsell baseline, MS + memory bank (ROUL's feature loss alone), + ROC,
+ ROC + MOC (full ROUL). Every row is scored plain, after ROUL's relative-order re-ranking
(rows with an order network; in the MS + bank row Φ_θ is trained by L_O alone and does not
touch the features) and after the diffusion re-ranking of the MoM issue on the same embedding,
each with its cost per query. Train on digits 0-4 (labels unused), evaluate on unseen 5-9.

    python benchmarks/bench_roul.py [--datasets mnist5k,digits] [--seeds 0,1,2] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mib, print_table  # noqa: E402
from bench_quality import (  # noqa: E402
    diffusion_row,
    fit_and_score,
    load_split,
    mean_std,
    record_start_only,
    recorder,
)
from labelfree.evaluate.metrics import evaluate_embeddings  # noqa: E402
from labelfree.evaluate.rerank import roul_rerank_metrics  # noqa: E402
from labelfree.features.base import compute_features  # noqa: E402
from labelfree.features.registry import get_extractor  # noqa: E402

ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("hadsell", "hadsell", {}),
    ("MS+bank", "roul", {"roc_weight": 0.0, "moc_weight": 0.0}),
    ("+ROC", "roul", {"moc_weight": 0.0}),
    ("+ROC+MOC=ROUL", "roul", {}),
]
METRICS = ("MAP@R", "R@1", "NMI")


def run_dataset(
    name: str, seeds: list[int], epochs: int, starts: list[str], extra: dict[str, Any]
) -> list[dict]:
    train, test = load_split(name)
    results, record = recorder()

    g = compute_features(get_extractor("hog-lda").fit(train), test)
    for s in seeds:
        record("g(x) hog-lda", {m: evaluate_embeddings(g, test.labels, seed=s)[m] for m in METRICS})
    record("g(x) hog-lda + diffusion", diffusion_row(g, test.labels))
    for start in starts:
        record_start_only(record, start, seeds, train, test)
        for label, method, options in ROWS:
            row = f"{label} ({start})"
            opts = {**options, **(extra if method == "roul" else {})}
            for s in seeds:
                m, z, res = fit_and_score(method, start, epochs, s, opts, train, test)
                record(row, res)
                msg = f"  {name} {row} seed {s}: MAP@R {res['MAP@R']:.3f} ({res['fit s']:.0f} s)"
                if method == "roul":
                    ro = roul_rerank_metrics(m, test, test.labels, seed=s)
                    record(
                        f"{row} + roul",
                        {
                            "MAP@R": ro["MAP@R"],
                            "R@1": ro["R@1"],
                            "rerank ms/q": ro["rerank_ms_per_query"],
                            "changed": ro["rerank_changed_fraction"],
                        },
                    )
                    msg += f", + roul {ro['MAP@R']:.3f}"
                dr = diffusion_row(z, test.labels)
                record(f"{row} + diffusion", dr)
                print(msg + f", + diffusion {dr['MAP@R']:.3f}", flush=True)
    g_base = float(np.mean(results["g(x) hog-lda"]["MAP@R"]))
    table = []
    for rep, vals in results.items():
        row = {"representation": rep}
        row.update({m: mean_std(vals[m]) for m in METRICS if m in vals})
        row["MAP@R / g(x)"] = round(float(np.mean(vals["MAP@R"])) / g_base, 3)
        # ratio to the MS + memory-bank baseline of the same start and the same re-ranking
        start = next((st for st in starts if f"({st})" in rep), None)
        suffix = rep[rep.find(f"({start})") + len(start) + 2 :] if start else ""
        base_key = f"MS+bank ({start}){suffix}"
        if start and base_key in results:
            row["MAP@R / MS+bank"] = round(
                float(np.mean(vals["MAP@R"])) / float(np.mean(results[base_key]["MAP@R"])), 3
            )
        for extra_col, nd in (("TP", 3), ("fit s", 1), ("rerank ms/q", 2), ("changed", 2)):
            if extra_col in vals:
                row[extra_col] = round(float(np.nanmean(vals[extra_col])), nd)
        table.append(row)
    n_cls = len(np.unique(test.labels))
    title = (
        f"{name}: train {train.name} ({len(train)} images, labels unused) -> held-out "
        f"{test.name} ({len(test)} images, {len(test) // n_cls} per class); "
        f"{len(seeds)} seed(s), {epochs} epochs; options {extra or 'defaults'}"
    )
    cols = [
        "representation",
        *METRICS,
        "MAP@R / g(x)",
        "MAP@R / MS+bank",
        "TP",
        "fit s",
        "rerank ms/q",
        "changed",
    ]
    print_table(table, cols, title)
    return [{"dataset": name, **r, "raw": results[r["representation"]]} for r in table]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist5k,digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--starts", default="scratch,distill")
    ap.add_argument("-o", "--option", action="append", default=[], help="roul option key=value")
    ap.add_argument("--out", default="bench-out/roul.json")
    args = ap.parse_args()
    extra: dict[str, Any] = {}
    for kv in args.option:
        k, v = kv.split("=", 1)
        try:
            extra[k] = json.loads(v)
        except ValueError:
            extra[k] = v
    seeds = [int(s) for s in args.seeds.split(",")]
    all_rows = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        all_rows += run_dataset(name, seeds, args.epochs, args.starts.split(","), extra)
    print(f"total {time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(all_rows, indent=1))


if __name__ == "__main__":
    main()
