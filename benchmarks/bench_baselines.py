"""Every image-level method beside the baselines it must beat, on one protocol, mean ± std.

Held-out classes (METHODS.md §0), 3 seeds, one run, each method with its own defaults from the
distilled start (the offline stand-in for the papers' ImageNet start): g(x) (pixels, HOG,
HOG-LDA), the start before fine-tuning, Hadsell, instance discrimination, Exemplar-CNN,
DeepCluster, STML, Divide & Conquer (unsupervised: k-means pseudo-classes), MoM, CliqueCNN,
Posets and ROUL. Datasets: mnist5k at 500 and 50 per class, sklearn digits, and mnist-numbers
(50 seen / 50 unseen two-digit numbers). Columns: MAP@R, R@1, NMI, the ratio to the best g(x),
fit seconds, seconds per training epoch and its ratio to Hadsell's (STML's must stay under 2),
and a restructuring (embed + structure step of a later round) over an epoch (D&C's
reclustering must stay under 0.15). With ``--rerank`` each row also after diffusion re-ranking.

    python benchmarks/bench_baselines.py [--datasets ...] [--seeds 0,1,2] [--rerank]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import main  # noqa: E402

ROWS = [
    ("hadsell", "hadsell", {}),
    ("instance discrimination", "instdisc", {}),
    ("exemplar-cnn", "exemplar-cnn", {}),
    ("deepcluster", "deepcluster", {}),
    ("stml", "stml", {}),
    ("d&c (pseudo-classes)", "dnc", {}),
    ("mom", "mom", {}),
    ("cliquecnn", "cliquecnn", {}),
    ("posets", "posets", {}),
    ("roul", "roul", {}),
]

if __name__ == "__main__":
    main(
        ROWS,
        __doc__,
        datasets="mnist5k,mnist5k-50,digits,mnist-numbers",
        starts="distill",
        out="bench-out/baselines.json",
    )
