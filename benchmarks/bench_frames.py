"""Object frames (seed 004 Ch.4–7) on generated data with exact ground truth, one run.

Synthetic faces (``synthetic-faces``: train / test draw disjoint identities):

1. Landmark regression (bias-free linear probe from the learned points to the 5 annotated
   landmarks, % inter-ocular distance, with the few-shot curve 1/5/10/20 annotated images) for
   ``fse`` K = 10 and 30, ``dense`` (3-d and 16-d), ``evc`` (16-d), ``dense-sym`` (3-d), each
   beside the randomly initialised network with the same options and the mean-shape predictor.
2. Cross-instance nearest-label matching error (px; test pairs of different identities):
   ``dense`` vs ``evc`` at 16-d (the thesis: EVC much better across identities).
3. Left↔right transfer error (px): the label at a landmark with its first coordinate reflected
   is matched in the same image and compared with the mirrored landmark (left eye → right eye),
   with and without ``dense-sym``.

Articulated arm (``synthetic-arm``, exact optical flow): the dense embedding trained on
consecutive-frame flow pairs, matching error against the exact flow on held-out videos for label
dimensions 2, 3, 5, 20 (thesis: 0.97 % of the width with 3-d labels at 90 px).

CPU-sized by default (48 px, networks at half the published width, 2,000 training pairs per
face method, 1 seed); every figure of a table is from the same run. The faces and arm parts can
run as two processes (``--part``).

    python benchmarks/bench_frames.py [--part faces|arm|all] [--size 48] [--n-train 2000]
        [--epochs 1] [--width 0.5] [--seed 0]
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

FACE_ROWS = [
    ("fse K=10", "fse", {"k": 10}),
    ("fse K=30", "fse", {"k": 30}),
    ("dense 3-d", "dense", {"dim": 3}),
    ("dense 16-d", "dense", {"dim": 16}),
    ("evc 16-d", "evc", {"dim": 16}),
    ("dense-sym 3-d", "dense-sym", {"dim": 3}),
]
ARM_DIMS = (2, 3, 5, 20)


def lr_transfer(method, images, pairs: int = 0) -> dict[str, float]:
    """Left↔right transfer (seed 004 Ch.6 §4.1): reflect the label at each landmark, find its
    nearest label in the same image, distance to the mirrored landmark (eyes and all)."""
    from labelfree.evaluate.landmarks import matching_error

    dense = method.dense_map(images)
    refl = dense.copy()
    refl[:, 0] *= -1
    lm = images.meta["landmarks"]
    perm = list(images.meta["mirror_perm"])
    eyes = list(images.meta["iod"])
    moved = lm[:, perm]
    return {
        "lr_eyes_px": matching_error(refl, lm[:, eyes], dense, moved[:, eyes]),
        "lr_all_px": matching_error(refl, lm, dense, moved),
    }


def faces(args) -> dict:
    from labelfree.data.synthetic import synthetic_faces
    from labelfree.evaluate.landmarks import mean_shape_error
    from labelfree.frames.pipeline import _probe_all, _subset
    from labelfree.methods import get_method

    train = synthetic_faces("train", n=args.n_train, size=args.size, seed=args.seed)
    test = synthetic_faces("test", n=args.n_test, size=args.size, seed=args.seed)
    probe_train = _subset(train, np.arange(min(len(train), 1000)))
    ms = mean_shape_error(probe_train.meta["landmarks"], test.meta["landmarks"], test.meta["iod"])
    out: dict = {"mean_shape": ms, "rows": {}}
    common = dict(epochs=args.epochs, width=args.width, seed=args.seed, progress=False)
    common.update(batch_size=args.batch_size, device="cpu")
    for label, name, opts in FACE_ROWS:
        t0 = time.perf_counter()
        m = get_method(name, **common, **opts).fit(train)
        fit_s = time.perf_counter() - t0
        reps = _probe_all(m, probe_train, test, args.seed)
        learned, rand = reps[name], reps["random-net"]
        if name.startswith("dense"):
            learned.update(lr_transfer(m, test))
            baseline = type(m)(**m.get_params()).init_untrained(probe_train)
            rand.update(lr_transfer(baseline, test))
        out["rows"][label] = {
            "learned": learned,
            "random": rand,
            "fit_s": fit_s,
            "loss": [h["loss"] for h in m.history],
        }
        print(f"[faces] {label}: fit {fit_s:.0f}s {json.dumps(learned)}", flush=True)
    rows = []
    for label, r in out["rows"].items():
        a, b = r["learned"], r["random"]
        rows.append(
            {
                "method": label,
                "% IOD": a["iod_error_all"],
                "1-shot": a["iod_error_1"],
                "5-shot": a["iod_error_5"],
                "10-shot": a["iod_error_10"],
                "20-shot": a["iod_error_20"],
                "random net": b["iod_error_all"],
                "mean shape": ms,
                "ratio vs random": a["iod_error_all"] / b["iod_error_all"],
                "ratio vs mean": a["iod_error_all"] / ms,
                "fit s": r["fit_s"],
            }
        )
    cols = ["method", "% IOD", "1-shot", "5-shot", "10-shot", "20-shot", "random net"]
    cols += ["mean shape", "ratio vs random", "ratio vs mean", "fit s"]
    print_table(
        rows, cols, f"Landmark regression, synthetic-faces {args.size}px (% IOD, lower=better)"
    )
    mrows = [
        {
            "method": label,
            "matching px": out["rows"][label]["learned"]["matching_px"],
            "random net px": out["rows"][label]["random"]["matching_px"],
            "ratio": out["rows"][label]["learned"]["matching_px"]
            / out["rows"][label]["random"]["matching_px"],
        }
        for label in ("dense 16-d", "evc 16-d", "dense 3-d", "fse K=10")
    ]
    print_table(mrows, ["method", "matching px", "random net px", "ratio"],
                "Cross-identity nearest-label matching (px, 200 test pairs of different identities)")  # fmt: skip
    trows = []
    for label in ("dense 3-d", "dense-sym 3-d"):
        r = out["rows"][label]
        trows.append(
            {
                "method": label,
                "eyes px": r["learned"]["lr_eyes_px"],
                "all px": r["learned"]["lr_all_px"],
                "random net eyes px": r["random"]["lr_eyes_px"],
            }
        )
    print_table(trows, ["method", "eyes px", "all px", "random net eyes px"],
                "Left<->right transfer (reflected label matched in the same image, px)")  # fmt: skip
    return out


def arm(args) -> dict:
    from labelfree.data.synthetic import arm_sequence
    from labelfree.frames.pipeline import probe_flow
    from labelfree.methods import get_method

    train = arm_sequence("train", n_videos=args.arm_videos, frames=args.arm_frames, size=args.size)
    test = arm_sequence("test", n_videos=4, frames=args.arm_frames, size=args.size)
    out: dict = {}
    rows = []
    for d in ARM_DIMS:
        t0 = time.perf_counter()
        m = get_method(
            "dense", dim=d, epochs=args.arm_epochs, width=args.width, seed=args.seed,
            progress=False, batch_size=args.batch_size, device="cpu", loss="log",
        ).fit(train)  # fmt: skip
        fit_s = time.perf_counter() - t0
        a = probe_flow(m, test, args.seed)
        b = probe_flow(type(m)(**m.get_params()).init_untrained(train), test, args.seed)
        out[d] = {"learned": a, "random": b, "fit_s": fit_s}
        print(f"[arm] dim {d}: fit {fit_s:.0f}s {a} random {b}", flush=True)
        rows.append(
            {
                "label dim": d,
                "error % width": a["flow_matching_pct"],
                "error px": a["flow_matching_px"],
                "random net %": b["flow_matching_pct"],
                "ratio": a["flow_matching_px"] / b["flow_matching_px"],
                "fit s": fit_s,
            }
        )
    print_table(rows, ["label dim", "error % width", "error px", "random net %", "ratio", "fit s"],
                f"Arm: dense matching error vs exact flow ({args.size}px, held-out videos)")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", default="all", choices=["faces", "arm", "all"])
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--arm-videos", type=int, default=20)
    ap.add_argument("--arm-frames", type=int, default=30)
    ap.add_argument("--arm-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    print(f"bench_frames: {vars(args)}", flush=True)
    t0 = time.perf_counter()
    res: dict = {"args": vars(args)}
    if args.part in ("faces", "all"):
        res["faces"] = faces(args)
    if args.part in ("arm", "all"):
        res["arm"] = arm(args)
    print(f"total {time.perf_counter() - t0:.0f}s, peak RSS {peak_rss_mib():.0f} MiB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1, default=float))


if __name__ == "__main__":
    main()
