"""Mining on Manifolds: the ablation of seed 002 Table 1 on the bundled data, mean ± std.

Rows NN5/random (= the Hadsell baseline), P⁺/random, NN5/P⁻, P⁺/P⁻ and P⁺/P⁻ weighted, beside
g(x) alone, each with MAP@R, R@1, NMI and the pools' TP/TN rates, from scratch and from the
pretrained-style starts (the distilled start is cached per seed, so rows share it). With
``--rerank`` every row is also scored after diffusion re-ranking, with its cost per query.

    python benchmarks/bench_mom.py [--datasets mnist5k,mnist5k-50,digits] [--seeds 0,1,2] --rerank
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_quality import main  # noqa: E402

ROWS = [
    ("NN5/random", "mom", {"positives": "euclidean", "negatives": "random"}),
    ("P+/random", "mom", {"positives": "manifold", "negatives": "random", "weighted": False}),
    ("NN5/P-", "mom", {"positives": "euclidean", "negatives": "manifold"}),
    ("P+/P-", "mom", {"positives": "manifold", "negatives": "manifold", "weighted": False}),
    ("P+/P- weighted", "mom", {"weighted": True}),  # = the mom defaults
    # P⁺ ranked by f_i / sqrt(d) (random-walk normalisation): purer P⁺ at 50 per class.
    ("P+/P- deg-norm", "mom", {"degree_normalized": True, "weighted": False}),
]


if __name__ == "__main__":
    main(ROWS, __doc__)
