"""Benchmark: streamed data (decoded pixels on disk, batches through a DataLoader) against the
in-memory path — training throughput on a set that fits in memory, and the peak resident memory
of a fit on a folder larger than the memory budget.

    python benchmarks/bench_stream.py [--n 3000] [--size 128] [--epochs 2]
    python benchmarks/bench_stream.py --memory [--big 60000] [--minutes 0]

Data: a generated folder of PNG files, ``--classes`` classes of a coloured shape (disc, square,
triangle, cross, ring × colour) at a random position, scale and rotation on a textured
background with noise; written once under ``--root`` (default ``$TMPDIR/labelfree-stream``).

Throughput (default): ``hadsell`` from scratch on ``--n`` images at ``--size`` px, g(x) = HOG;
the same fit in memory (baseline) and streamed (``--stream``, ``workers`` = 1 and 0). Columns:
seconds per training epoch (mean over epochs), images embedded per second, ratio streamed /
in-memory (≥ 0.8 is the bar the design sets). Both paths train to the same weights
(tests/test_streaming.py), so only the speed differs.

Memory (``--memory``): ``labelfree fit --stream`` on ``--big`` images at 128 px (≈ 2.9 GB of
decoded pixels) with held-out classes as ``--eval``, run under ``/usr/bin/time -v``: peak
resident memory of the whole fit (load → store, g(x), structure, training, evaluation, report).
``--big-batch`` = 16 tuples (up to 48 images) a step: the activations of a training step grow
with batch × pixels and are not the data's memory (the default 128 hadsell tuples — up to 384
images — at 128 px take 4.4 GB in the small CNN's backward pass alone; 32 tuples on 1,000 images
already peak at 1.8 GiB). ``--big-steps`` caps
the training epoch (``-o steps``; default 300 steps): every stage still sees all the images —
the pixel store, g(x), the kNN structure, the evaluation and the report — but a full epoch of
180,000 embedded 128-px images would take about an hour on 2 cores, and a step's memory does not
grow with the number of steps. ``--minutes`` > 0 stops the fit after that long (the peak so far
is still reported); 0 runs to the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table  # noqa: E402

SHAPES = ("disc", "square", "triangle", "cross", "ring")


def _draw(cls: int, seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([cls, seed])
    base = np.random.default_rng(cls).uniform(40, 215, 3)  # the class's colour
    yy, xx = np.mgrid[0:size, 0:size] / size
    bg = rng.uniform(60, 190, 3) + 30 * np.sin(
        (xx * rng.uniform(4, 14) + yy * rng.uniform(4, 14))[..., None] + rng.uniform(0, 6, 3)
    )
    cx, cy = rng.uniform(0.3, 0.7, 2)
    r = rng.uniform(0.15, 0.3)
    a = rng.uniform(0, np.pi)
    u = ((xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)) / r
    v = (-(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)) / r
    shape = SHAPES[cls % len(SHAPES)]
    mask = {
        "disc": u**2 + v**2 < 1,
        "square": (abs(u) < 0.8) & (abs(v) < 0.8),
        "triangle": (v < 0.7) & (v > 1.7 * abs(u) - 1),
        "cross": ((abs(u) < 0.3) | (abs(v) < 0.3)) & (abs(u) < 1) & (abs(v) < 1),
        "ring": (u**2 + v**2 < 1) & (u**2 + v**2 > 0.4),
    }[shape]
    img = np.where(mask[..., None], base + rng.normal(0, 12, 3), bg)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(job: tuple[str, int, int, int]) -> None:
    from PIL import Image

    path, cls, seed, size = job
    Image.fromarray(_draw(cls, seed, size)).save(path, compress_level=1)


def make_folder(root: Path, classes: range, per_class: int, size: int) -> Path:
    """The folder (class sub-folders), generated once; a finished folder has a marker file."""
    done = root / ".complete"
    if done.exists():
        return root
    jobs = []
    for c in classes:
        (root / f"class{c:03d}").mkdir(parents=True, exist_ok=True)
        jobs += [
            (str(root / f"class{c:03d}" / f"{i:05d}.png"), c, i, size) for i in range(per_class)
        ]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_write, jobs, chunksize=256))
    done.write_text("")
    print(f"generated {len(jobs)} images in {root} ({time.perf_counter() - t0:.0f} s)")
    return root


def throughput(args: argparse.Namespace) -> None:
    from labelfree.data.folder import load_folder
    from labelfree.methods import get_method

    per = args.n // args.classes
    folder = make_folder(
        args.root / f"small-{args.n}-{args.size}", range(args.classes), per, args.size
    )
    os.environ.setdefault("LABELFREE_CACHE", str(args.root / "cache"))
    rows = []
    for label, stream, workers in (("in memory", False, 1), ("streamed, 1 worker", True, 1),
                                   ("streamed, no worker", True, 0)):  # fmt: skip
        data = load_folder(folder, image_size=args.size, stream=stream, progress=False)
        m = get_method(
            "hadsell", start="scratch", features="hog", epochs=args.epochs, progress=False,
            device="cpu", workers=workers, batch_size=args.batch_size,
        )  # fmt: skip
        m.fit(data)
        epochs = [r for r in m.history_ if r.get("stage") == "hadsell"]
        sec = float(np.mean([r["seconds"] for r in epochs]))
        rows.append({"path": label, "pixels": "on disk" if data.streaming else "in RAM", "s/epoch": sec,
                     "images/s": 3 * len(data) / sec})  # fmt: skip
    for r in rows:
        r["ratio"] = rows[0]["s/epoch"] / r["s/epoch"]
    print_table(
        rows,
        ["path", "pixels", "s/epoch", "images/s", "ratio"],
        f"Training throughput, hadsell from scratch, {args.n} images at {args.size} px, "
        f"batch {args.batch_size}, {args.epochs} epochs (ratio: in-memory s/epoch ÷ this row's; "
        "≥ 0.8 wanted)",
    )


def memory(args: argparse.Namespace) -> None:
    n_train_classes = 50
    per = args.big // n_train_classes
    train = make_folder(args.root / f"big-{args.big}", range(n_train_classes), per, 128)
    test = make_folder(args.root / "big-test", range(100, 120), 100, 128)
    out = Path(tempfile.mkdtemp(prefix="labelfree-stream-run-"))
    cmd = [
        "/usr/bin/time", "-v", sys.executable, "-m", "labelfree.cli", "fit",
        "--data", str(train), "--eval", str(test), "--image-size", "128", "--stream",
        "--out", str(out / "run"), "--start", "scratch", "--epochs", "1", "--no-progress",
        "--batch-size", str(args.big_batch), "-o", f"steps={args.big_steps}",
    ]  # fmt: skip
    env = {**os.environ, "LABELFREE_CACHE": str(args.root / "cache")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=args.minutes * 60 if args.minutes > 0 else None)
        stopped = False
    except subprocess.TimeoutExpired:
        proc.terminate()  # /usr/bin/time passes it on and still reports the peak
        _, err = proc.communicate()
        stopped = True
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    peak = int(rss.group(1)) / 1024 if rss else float("nan")
    ok = proc.returncode == 0
    metrics = out / "run" / "metrics.json"
    print_table(
        [
            {
                "images": args.big,
                "pixels GiB": args.big * 128 * 128 * 3 / 2**30,
                "finished": ok,
                "stopped": stopped,
                "wall s": wall,
                "peak RSS MiB": peak,
                "budget MiB": 2048,
                "ratio": peak / 2048,
                "metrics.json": metrics.exists(),
            },
        ],  # fmt: skip
        [
            "images",
            "pixels GiB",
            "finished",
            "stopped",
            "wall s",
            "peak RSS MiB",
            "budget MiB",
            "ratio",
            "metrics.json",
        ],  # fmt: skip
        f"Peak resident memory of `labelfree fit --stream` (hadsell, scratch, 1 epoch of "
        f"{args.big_steps} steps, batch {args.big_batch}, eval on 2,000 held-out images); ratio = peak / 2 GiB budget",
    )
    if not ok and not stopped:
        print(err[-3000:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--classes", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--memory", action="store_true")
    p.add_argument("--big", type=int, default=60_000)
    p.add_argument("--minutes", type=float, default=0)
    p.add_argument("--big-steps", type=int, default=300)
    p.add_argument("--big-batch", type=int, default=16)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "labelfree-stream")
    args = p.parse_args()
    memory(args) if args.memory else throughput(args)


if __name__ == "__main__":
    main()
