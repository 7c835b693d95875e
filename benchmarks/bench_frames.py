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
face method, 3 seeds); every figure of a table is from the same run. The faces and arm parts can
run as two processes (``--part``).

    python benchmarks/bench_frames.py [--part faces|arm|all] [--size 48] [--n-train 2000]
        [--epochs 1] [--width 0.5] [--seeds 0,1,2]
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


def _ms(values: list[float], digits: int = 2) -> str:
    """``mean ± std`` over seeds (population std, as in bench_quality)."""
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def faces_one(args, seed: int) -> dict:
    """Every face row for one seed: the data, the networks and the probes all follow ``seed``."""
    from labelfree.data.synthetic import synthetic_faces
    from labelfree.evaluate.landmarks import mean_shape_error
    from labelfree.frames.pipeline import _probe_all, _subset
    from labelfree.methods import get_method

    train = synthetic_faces("train", n=args.n_train, size=args.size, seed=seed)
    test = synthetic_faces("test", n=args.n_test, size=args.size, seed=seed)
    probe_train = _subset(train, np.arange(min(len(train), 1000)))
    ms = mean_shape_error(probe_train.meta["landmarks"], test.meta["landmarks"], test.meta["iod"])
    out: dict = {"mean_shape": ms, "rows": {}}
    common = dict(epochs=args.epochs, width=args.width, seed=seed, progress=False)
    common.update(batch_size=args.batch_size, device="cpu", steps=0)  # every training pair
    for label, name, opts in FACE_ROWS:
        t0 = time.perf_counter()
        m = get_method(name, **common, **opts).fit(train)
        fit_s = time.perf_counter() - t0
        reps = _probe_all(m, probe_train, test, seed)
        learned, rand = reps[name], reps["random-net"]
        if name.startswith("dense"):
            learned.update(lr_transfer(m, test))
            baseline = m.clone().init_untrained(probe_train)
            rand.update(lr_transfer(baseline, test))
        out["rows"][label] = {
            "learned": learned,
            "random": rand,
            "fit_s": fit_s,
            "loss": [h["loss"] for h in m.history_],
        }
        print(f"[faces] seed {seed} {label}: fit {fit_s:.0f}s {json.dumps(learned)}", flush=True)
    return out


def faces(args) -> dict:
    runs = {seed: faces_one(args, seed) for seed in args.seeds}

    def vals(label: str, which: str, key: str) -> list[float]:
        return [r["rows"][label][which][key] for r in runs.values()]

    ms = [r["mean_shape"] for r in runs.values()]
    rows = []
    for label, _, _ in FACE_ROWS:
        err, rnd = vals(label, "learned", "iod_error_all"), vals(label, "random", "iod_error_all")
        row = {"method": label, "% IOD": _ms(err)}
        for shots in (1, 5, 10, 20):
            row[f"{shots}-shot"] = _ms(vals(label, "learned", f"iod_error_{shots}"), 1)
        row["random net"] = _ms(rnd)
        row["mean shape"] = _ms(ms)
        row["ratio vs random"] = float(np.mean(np.divide(err, rnd)))
        row["ratio vs mean"] = float(np.mean(np.divide(err, ms)))
        row["fit s"] = round(float(np.mean([r["rows"][label]["fit_s"] for r in runs.values()])))
        rows.append(row)
    cols = ["method", "% IOD", "1-shot", "5-shot", "10-shot", "20-shot", "random net"]
    cols += ["mean shape", "ratio vs random", "ratio vs mean", "fit s"]
    n = len(runs)
    print_table(rows, cols, f"Landmark regression, synthetic-faces {args.size}px "
                f"(% IOD, lower=better; mean ± std over {n} seeds)")  # fmt: skip
    mrows = []
    for label in ("dense 16-d", "evc 16-d", "dense 3-d", "fse K=10"):
        a, b = vals(label, "learned", "matching_px"), vals(label, "random", "matching_px")
        mrows.append(
            {
                "method": label,
                "matching px": _ms(a),
                "random net px": _ms(b),
                "ratio": float(np.mean(np.divide(a, b))),
            }
        )
    print_table(mrows, ["method", "matching px", "random net px", "ratio"],
                "Cross-identity nearest-label matching (px, test pairs of different identities; "
                f"{n} seeds)")  # fmt: skip
    trows = []
    for label in ("dense 3-d", "dense-sym 3-d"):
        trows.append(
            {
                "method": label,
                "eyes px": _ms(vals(label, "learned", "lr_eyes_px")),
                "all px": _ms(vals(label, "learned", "lr_all_px")),
                "random net eyes px": _ms(vals(label, "random", "lr_eyes_px")),
            }
        )
    print_table(trows, ["method", "eyes px", "all px", "random net eyes px"],
                f"Left<->right transfer (reflected label matched in the same image, px; {n} seeds)")  # fmt: skip
    return {str(k): v for k, v in runs.items()}


def arm(args) -> dict:
    from labelfree.data.synthetic import arm_sequence
    from labelfree.frames.pipeline import probe_flow
    from labelfree.methods import get_method

    train = arm_sequence("train", n_videos=args.arm_videos, frames=args.arm_frames, size=args.size)
    test = arm_sequence("test", n_videos=4, frames=args.arm_frames, size=args.size)
    out: dict = {}
    rows = []
    for d in ARM_DIMS:
        out[d] = {}
        for seed in args.seeds:
            t0 = time.perf_counter()
            m = get_method(
                "dense", dim=d, epochs=args.arm_epochs, width=args.width, seed=seed,
                progress=False, batch_size=args.batch_size, device="cpu", loss="log",
            ).fit(train)  # fmt: skip
            fit_s = time.perf_counter() - t0
            a = probe_flow(m, test, seed)
            b = probe_flow(m.clone().init_untrained(train), test, seed)
            out[d][seed] = {"learned": a, "random": b, "fit_s": fit_s}
            print(f"[arm] dim {d} seed {seed}: fit {fit_s:.0f}s {a} random {b}", flush=True)
        r = list(out[d].values())
        a = [x["learned"]["flow_matching_pct"] for x in r]
        b = [x["random"]["flow_matching_pct"] for x in r]
        rows.append(
            {
                "label dim": d,
                "error % width": _ms(a),
                "error px": _ms([x["learned"]["flow_matching_px"] for x in r]),
                "random net %": _ms(b),
                "ratio": float(np.mean(np.divide(a, b))),
                "fit s": round(float(np.mean([x["fit_s"] for x in r]))),
            }
        )
    print_table(rows, ["label dim", "error % width", "error px", "random net %", "ratio", "fit s"],
                f"Arm: dense matching error vs exact flow ({args.size}px, held-out videos; "
                f"{len(args.seeds)} seeds)")  # fmt: skip
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
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (mean ± std)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    args.seeds = [int(x) for x in str(args.seeds).split(",")]
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
