"""Motion chapters of seed 004 on generated data with exact ground truth, one run, 3 seeds.

1. Cross-pixel optical-flow similarity (Ch.8): ``cpfs`` with the CE, reversed-CE and KTA
   losses against the chapter's baseline (direct per-axis flow classification,
   ``objective=classify``) and the same network with random weights, trained on
   ``synthetic-sprites:train`` (frames with exact flow) and scored on held-out frames of
   ``synthetic-sprites:test`` by frozen probes of object categories: a linear probe of the
   hypercolumn (mIoU), nearest-neighbour label transfer with the embedding (mIoU), and the
   embedding's same-object grouping AUC. The chapter's claim: CPFS ≥ direct classification >
   random (§4.6, Table 1).
2. Trainable DeepMatching (Ch.3 Table 1): fixed / learned ν × fixed (HOG) / learned descriptors,
   trained on warp pairs of the sprite frames and scored on held-out warp pairs (accuracy at 2 /
   5 / 10 px after reciprocal verification and densification, end-point error). The chapter's
   claim: learning both wins (Sintel acc@2 84.52 → 86.79).
3. Cost: time and peak memory (resident memory above what the network and inputs hold) of one
   training step and of dense matching at 64, 128, 256 px (each in a fresh process), with the search radius fixed (12 cells) and growing with
   the side (12 cells per 64 px), beside one CPFS training step.

    python benchmarks/bench_flow.py [--seeds 0,1,2] [--parts cpfs,dm,cost] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mib, print_table  # noqa: E402

CPFS_ROWS = [
    ("cpfs CE", {"objective": "ce"}),
    ("cpfs CE-rev", {"objective": "ce-rev"}),
    ("cpfs KTA", {"objective": "kta"}),
    ("direct flow classification", {"objective": "classify"}),
]
DM_ROWS = [
    ("(a) HOG, fixed ν (untrained)", None),
    ("(b) HOG, learned ν", {"descriptors": "hog", "learn_nu": True}),
    ("(e) learned descriptors, fixed ν", {"descriptors": "learned", "learn_nu": False}),
    ("(f) learned descriptors and ν", {"descriptors": "learned", "learn_nu": True}),
]


def _ms(values: list[float], digits: int = 3) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def cpfs_part(seeds: list[int]) -> dict:
    from labelfree.data.synth_sprites import sprite_videos
    from labelfree.methods import get_method

    res: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        train, test = sprite_videos("train", seed=seed), sprite_videos("test", seed=seed)
        for label, opts in CPFS_ROWS:
            t0 = time.perf_counter()
            m = get_method("cpfs", seed=seed, progress=False, device="cpu", **opts).fit(train)
            fit_s = time.perf_counter() - t0
            reps = m.evaluate(test, train=train).representations
            for name, row in ((label, reps["cpfs"]), ("random network", reps["random-net"])):
                if name == "random network" and label != CPFS_ROWS[0][0]:
                    continue
                cell = res.setdefault(name, {})
                for k, v in row.items():
                    cell.setdefault(k, []).append(v)
                if name == label:
                    cell.setdefault("fit_s", []).append(fit_s)
            print(f"  seed {seed} {label}: {reps['cpfs']} fit {fit_s:.0f}s", flush=True)
    rand = np.mean(res["random network"]["probe_miou"])
    cls = np.mean(res["direct flow classification"]["probe_miou"])
    rows = []
    for name, cols in res.items():
        pm = np.mean(cols["probe_miou"])
        rows.append(
            {
                "row": name,
                "probe mIoU": _ms(cols["probe_miou"]),
                "NN mIoU": _ms(cols["nn_miou"]),
                "group AUC": _ms(cols["group_auc"]),
                "probe / random": round(pm / rand, 3),
                "probe / direct cls": round(pm / cls, 3),
                "fit s": round(float(np.mean(cols["fit_s"])), 1) if "fit_s" in cols else "-",
            }
        )
    print_table(
        rows,
        [
            "row",
            "probe mIoU",
            "NN mIoU",
            "group AUC",
            "probe / random",
            "probe / direct cls",
            "fit s",
        ],
        f"CPFS (seed 004 Ch.8) on synthetic-sprites: train {len(seeds)} seeds x 480 frames with "
        "exact flow -> held-out frames, frozen probes of 6 categories (background + 5)",
    )
    return res


def dm_part(seeds: list[int]) -> dict:
    from labelfree.data.synth_sprites import sprite_videos
    from labelfree.frames.matching_probe import held_out_pairs, match_pairs, score_matches
    from labelfree.methods import get_method

    res: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        train, test = sprite_videos("train", seed=seed), sprite_videos("test", seed=seed)
        base = get_method("deepmatching", seed=seed, progress=False, device="cpu")
        pairs = held_out_pairs(test, base.source.strength, seed)
        for label, opts in DM_ROWS:
            t0 = time.perf_counter()
            if opts is None:
                m = base.clone().set_params(descriptors="hog", learn_nu=False)
                m.init_untrained(train)
            else:
                m = base.clone().set_params(**opts).fit(train)
            fit_s = time.perf_counter() - t0
            row = score_matches(match_pairs(m.net_, pairs), pairs)
            row["fit_s"] = fit_s if opts is not None else float("nan")
            nu = m.net_.pyramid.nu.detach().numpy().round(3).tolist()
            print(f"  seed {seed} {label}: {row} nu {nu}", flush=True)
            for k, v in row.items():
                res.setdefault(label, {}).setdefault(k, []).append(v)
    base_acc = np.mean(res[DM_ROWS[0][0]]["acc@2"])
    rows = [
        {
            "row": name,
            "acc@2": _ms(c["acc@2"]),
            "acc@5": _ms(c["acc@5"]),
            "acc@10": _ms(c["acc@10"]),
            "EPE px": _ms(c["epe_px"], 2),
            "verified": _ms(c["verified"]),
            "acc@2 / (a)": round(np.mean(c["acc@2"]) / base_acc, 3),
            "fit s": "-" if np.isnan(c["fit_s"]).all() else round(float(np.mean(c["fit_s"])), 1),
        }
        for name, c in res.items()
    ]
    print_table(
        rows,
        ["row", "acc@2", "acc@5", "acc@10", "EPE px", "verified", "acc@2 / (a)", "fit s"],
        f"Trainable DeepMatching (seed 004 Ch.3 Table 1) on held-out warp pairs of "
        f"synthetic-sprites:test (32 pairs per seed, {len(seeds)} seeds, 64 px, radius 24 px)",
    )
    return res


class _RssPeak:
    """Peak resident memory above the level at ``start()``, sampled every 2 ms from
    /proc/self/statm by a thread (torch's CPU allocations are invisible to tracemalloc, and
    ru_maxrss keeps the peak of the imports)."""

    def __init__(self) -> None:
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self.base = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.002)

    def start(self) -> _RssPeak:
        self.base = self.peak = self._rss()
        self._thread.start()
        return self

    def stop_mib(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.base) / 2**20


def _cost_child(kind: str, side: int, radius: int, queue) -> None:
    """One measurement in a fresh process: the peak RSS growth of a first repetition, above the
    memory held once the network and inputs exist (a sampling thread runs only then), and the
    median seconds of three more repetitions without it."""
    import torch

    torch.set_num_threads(2)
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    if kind == "cpfs step":
        from labelfree.frames.nets import HypercolumnNet
        from labelfree.losses.cpfs import cpfs_loss

        net = HypercolumnNet(16)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        xb = x.repeat(2, 1, 1, 1)

        def once() -> None:
            emb = net(xb).flatten(2).transpose(1, 2)[:, :512]
            loss = cpfs_loss(emb, torch.rand(2, emb.shape[1], 2) - 0.5)
            opt.zero_grad()
            loss.backward()
            opt.step()

    else:
        from labelfree.evaluate.deepmatching import decode, densify, reciprocal
        from labelfree.losses.deepmatching import structured_hinge
        from labelfree.nets.deepmatching_net import DeepMatchingNet

        net = DeepMatchingNet(radius=radius)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x2 = torch.roll(x, (3, 2), (2, 3))
        h = side // 2
        truth = torch.tensor([1.0, 1.5]).expand(1, h, h, 2)
        valid = torch.ones(1, h, h, dtype=torch.bool)

        def once() -> None:
            if kind == "dm step":
                q0 = net.match(net(x), net(x2))
                loss, _ = structured_hinge(q0, truth, valid, radius)
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                with torch.no_grad():
                    q0 = net.match(net(x), net(x2))
                    disp, score = decode(q0)
                    densify(disp, reciprocal(q0, disp), 4, score)

    mem = _RssPeak().start()
    once()
    peak = mem.stop_mib()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    queue.put((float(np.median(times)), peak))


def cost_part() -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    cases = [("cpfs step", s, 0) for s in (64, 128, 256)]
    for kind in ("dm step", "dm matching"):
        cases += [(kind, side, 12) for side in (64, 128, 256)]
        # the radius growing with the side (the score volume then grows as side⁴); a training
        # step at 256 px with R = 48 cells would need ~16 GiB, so matching only there
        cases.append((kind, 128, 24))
        if kind == "dm matching":
            cases.append((kind, 256, 48))
    for kind, side, radius in cases:
        q = ctx.Queue()
        p = ctx.Process(target=_cost_child, args=(kind, side, radius, q))
        p.start()
        sec, peak = q.get()
        p.join()
        cells = (side // 2) ** 2
        volume = cells * (2 * radius + 1) ** 2 if radius else 0
        rows.append(
            {
                "what": kind,
                "side px": side,
                "radius px": 2 * radius if radius else "-",
                "Q0 entries (M)": round(volume / 1e6, 2) if radius else "-",
                "seconds": round(sec, 3),
                "peak MiB": round(peak, 1),
            }
        )
        print(f"  {rows[-1]}", flush=True)
    print_table(
        rows,
        ["what", "side px", "radius px", "Q0 entries (M)", "seconds", "peak MiB"],
        "Cost of one step (batch: 1 pair for DeepMatching, 2 frames for CPFS) and of dense "
        "matching (pyramid + verification + densification), fresh process each, 2 threads",
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="cpfs,dm,cost")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = args.parts.split(",")
    t0 = time.perf_counter()
    out: dict = {}
    if "cpfs" in parts:
        out["cpfs"] = cpfs_part(seeds)
    if "dm" in parts:
        out["deepmatching"] = dm_part(seeds)
    if "cost" in parts:
        out["cost"] = cost_part()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
