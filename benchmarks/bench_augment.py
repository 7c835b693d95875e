"""Benchmark: throughput of the batch augmentation (``labelfree.data.Augment``) on the CPU.

    python benchmarks/bench_augment.py [--batch 256] [--sizes 28 64] [--repeats 5] [--threads 1]

For each image size, one ``(batch, 3, size, size)`` float batch (fixed seed) is augmented with
labelfree's :class:`~labelfree.data.Augment` at its defaults (rotation ±10°, resized crop of
area 0.5–1, horizontal flip, colour jitter) and, as the baseline in the same run, with a plain
``kornia.augmentation.AugmentationSequential`` of the same four kornia ops and parameters (what
``Augment`` adds on top: input checks and the final clamp to [0, 1]). Each is warmed up once,
then timed ``--repeats`` times; the table gives the best time, images per second and the ratio
labelfree / kornia (1.0 = no overhead). ``--threads`` sets torch's intra-op threads (default 1:
measures the work itself, not contention on a shared machine).

The figure of interest is the ratio; the absolute rate depends on the machine (the test suite
used to require < 0.5 s for 256 images of 28 px on one thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import kornia.augmentation as K
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, print_table  # noqa: E402
from labelfree.data import Augment  # noqa: E402


def kornia_baseline(size: int) -> torch.nn.Module:
    """The ops ``Augment((size, size))`` builds at its defaults, as a bare kornia sequence."""
    return K.AugmentationSequential(
        K.RandomRotation(degrees=10.0, p=1.0),
        K.RandomResizedCrop(
            (size, size), scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), cropping_mode="resample"
        ),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
    )


def best_time(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for size in args.sizes:
        x = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        ours, base = Augment((size, size)), kornia_baseline(size)
        if [type(m) for m in ours.ops] != [type(m) for m in base.children()]:
            raise SystemExit(f"the baseline no longer mirrors Augment's ops: {ours.ops}")
        torch.manual_seed(0)
        t_ours = best_time(lambda ours=ours, x=x: ours(x), args.repeats)
        torch.manual_seed(0)
        t_base = best_time(lambda base=base, x=x: base(x), args.repeats)
        for name, secs in (("labelfree Augment", t_ours), ("kornia sequence", t_base)):
            rows.append(
                {
                    "size": size,
                    "augmentation": name,
                    "best s": round(secs, 4),
                    "images/s": round(args.batch / secs, 1),
                    "labelfree / kornia": round(t_ours / t_base, 3) if name[0] == "l" else None,
                }
            )
    title = (
        f"Augmentation of {args.batch} images, best of {args.repeats}, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    print_table(rows, ["size", "augmentation", "best s", "images/s", "labelfree / kornia"], title)
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
