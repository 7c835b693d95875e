"""Quality on held-out classes: initial features g(x) vs the Hadsell baseline, mean ± std.

Protocol (METHODS.md §0): train on the images of digits 0-4 (labels unused), evaluate on the
unseen digits 5-9. Datasets: mnist5k (500 per class), mnist5k at 50 per class (the papers'
fine-grained regime), sklearn digits (~180 per class, upsampled to 32 px). Each learned row is
run with 3 seeds from scratch and from the two pretrained-style starts; the g(x) rows vary only
through the NMI k-means seed. The ratio column compares each row's MAP@R with the best initial
feature in the same run.

    python benchmarks/bench_quality.py [--datasets mnist5k,mnist5k-50,digits] [--seeds 0,1,2]
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
from labelfree.data.registry import load_data  # noqa: E402
from labelfree.evaluate.metrics import evaluate_embeddings  # noqa: E402
from labelfree.features.base import compute_features, get_extractor  # noqa: E402
from labelfree.methods import get_method  # noqa: E402

DATASETS = {
    "mnist5k": ("mnist5k:train", "mnist5k:test", None),
    "mnist5k-50": ("mnist5k:train", "mnist5k:test", 50),
    "digits": ("digits:train", "digits:test", None),
}
METRICS = ("MAP@R", "R@1", "NMI")


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def run_dataset(name: str, seeds: list[int], epochs: int, starts: list[str]) -> list[dict]:
    train_spec, test_spec, per_class = DATASETS[name]
    train = load_data(train_spec, per_class=per_class)
    test = load_data(test_spec, per_class=per_class)
    results: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for feat in ("pixels", "hog", "hog-lda"):
        f = compute_features(get_extractor(feat).fit(train), test)
        for s in seeds:
            res = evaluate_embeddings(f, test.labels, seed=s)
            for m in METRICS:
                results.setdefault(f"g(x) {feat}", {}).setdefault(m, []).append(res[m])
    for start in starts:
        row = f"hadsell ({start})"
        for s in seeds:
            t0 = time.perf_counter()
            method = get_method("hadsell", start=start, epochs=epochs, seed=s, progress=False)
            method.fit(train)
            seconds.setdefault(row, []).append(time.perf_counter() - t0)
            res = evaluate_embeddings(method.embed(test), test.labels, seed=s)
            for m in METRICS:
                results.setdefault(row, {}).setdefault(m, []).append(res[m])
            print(
                f"  {name} {row} seed {s}: MAP@R {res['MAP@R']:.3f} ({seconds[row][-1]:.0f} s)",
                flush=True,
            )
    best_g = max(
        (k for k in results if k.startswith("g(x)")), key=lambda k: np.mean(results[k]["MAP@R"])
    )
    base = float(np.mean(results[best_g]["MAP@R"]))
    rows = []
    for rep, vals in results.items():
        row = {"representation": rep}
        row.update({m: mean_std(vals[m]) for m in METRICS})
        row[f"MAP@R / {best_g}"] = round(float(np.mean(vals["MAP@R"])) / base, 3)
        row["fit s"] = round(float(np.mean(seconds[rep])), 1) if rep in seconds else None
        rows.append(row)
    title = (
        f"{name}: train {train.name} ({len(train)} images, labels unused) -> held-out "
        f"{test.name} ({len(test)} images, {len(test) // len(np.unique(test.labels))} per class); "
        f"{len(seeds)} seeds, {epochs} epochs"
    )
    print_table(rows, ["representation", *METRICS, f"MAP@R / {best_g}", "fit s"], title)
    return [{"dataset": name, **r, "raw": results.get(r["representation"])} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist5k,mnist5k-50,digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--starts", default="scratch,distill,feature-head")
    ap.add_argument("--out", default="bench-out/quality.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    all_rows = []
    t0 = time.perf_counter()
    for name in args.datasets.split(","):
        all_rows += run_dataset(name, seeds, args.epochs, args.starts.split(","))
    print(f"total {time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(all_rows, indent=1))


if __name__ == "__main__":
    main()
