"""Evaluation and pictures of ``deepmatching`` (seed 004 Ch.3 §3): dense matches on held-out
warp pairs with exact correspondences, accuracy@2/5/10 px and end-point error after the
chapter's reciprocal verification and densification (footnotes 1 and 3), beside the untrained
pyramid (fixed HOG descriptors, ν = 1.4: DeepMatching as published, Table 1 row (a))."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelfree.data.imageset import ImageSet
from labelfree.evaluate.deepmatching import decode, densify, match_metrics, reciprocal
from labelfree.evaluate.field_drawing import draw_rows, flow_to_rgb
from labelfree.evaluate.results import Metrics
from labelfree.frames.nets import STRIDE
from labelfree.frames.warps import WarpParams, make_pair, pixel_grid

MATCH_METRICS = ("acc@2", "acc@5", "acc@10", "epe_px", "verified", "raw_acc@2")
#: Held-out pairs per evaluation and the densification radius (footnote 3: 8 px = 4 cells).
EVAL_PAIRS, DENSIFY_CELLS = 32, 4


def held_out_pairs(images: ImageSet, strength: float, seed: int, n: int = EVAL_PAIRS) -> dict:
    """``n`` fixed warp pairs (x, x′) of ``images`` (a seeded generator, so every model is scored
    on the same pairs) with the exact displacement of each stride-2 cell of x, in cells of x′'s
    map, and the cells whose correspondence lies inside x′."""
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    src = images.tensor(pick)
    gen = torch.Generator().manual_seed(seed)
    pair = make_pair(src, WarpParams(strength=strength), generator=gen)
    h, w = src.shape[-2:]
    hm, wm = h // STRIDE, w // STRIDE
    centres = pixel_grid(h, w, STRIDE)  # (hm·wm, 2) pixels of x
    target = pair.field(STRIDE)  # pixels of x′
    truth = ((target - centres) / STRIDE).reshape(len(pick), hm, wm, 2)
    inside = (target >= -0.5).all(-1) & (target[..., 0] <= w - 0.5) & (target[..., 1] <= h - 0.5)
    valid = pair.valid[:, ::STRIDE, ::STRIDE] & inside.reshape(len(pick), hm, wm)
    return {"x": pair.x, "x2": pair.x2, "truth": truth, "valid": valid}


@torch.no_grad()
def match_pairs(net: Any, pairs: dict, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Decode every pair: the raw argmax field, verified matches and the densified field."""
    net.eval()
    device = next(iter(net.parameters()), torch.zeros(())).device
    raw, ver, dense, matched = [], [], [], []
    for s in range(0, len(pairs["x"]), batch_size):
        f0 = net(pairs["x"][s : s + batch_size].to(device))
        f1 = net(pairs["x2"][s : s + batch_size].to(device))
        q0 = net.match(f0, f1)
        disp, score = decode(q0)
        v = reciprocal(q0, disp)
        d, m = densify(disp, v, DENSIFY_CELLS, score)
        raw.append(disp.cpu())
        ver.append(v.cpu())
        dense.append(d.cpu())
        matched.append(m.cpu())
    cat = torch.cat
    return {"raw": cat(raw), "verified": cat(ver), "dense": cat(dense), "matched": cat(matched)}


def score_matches(out: dict, pairs: dict) -> dict[str, float]:
    """The columns of :data:`MATCH_METRICS` for decoded pairs."""
    truth, valid = pairs["truth"], pairs["valid"]
    row = match_metrics(out["dense"], truth, valid, STRIDE, matched=out["matched"])
    row["verified"] = float((out["verified"] & valid).sum()) / max(int(valid.sum()), 1)
    row["raw_acc@2"] = match_metrics(out["raw"], truth, valid, STRIDE)["acc@2"]
    return row


def evaluate_matching(method: Any, eval_set: ImageSet, seed: int = 0) -> Metrics:
    """Score ``method`` and the untrained pyramid on the same held-out pairs."""
    pairs = held_out_pairs(eval_set, method.source.strength, seed)
    untrained = method.clone().set_params(descriptors="hog", learn_nu=False, nu=1.4)
    untrained.init_untrained(eval_set)
    reps = {
        method.name: score_matches(match_pairs(method.net_, pairs), pairs),
        "untrained (HOG, ν 1.4)": score_matches(match_pairs(untrained.net_, pairs), pairs),
    }
    return Metrics(
        reps,
        MATCH_METRICS,
        higher_is_better=True,
        reversed_columns=("epe_px",),
        run={"kind": "matching", "n_pairs": len(pairs["x"]), "strength": method.source.strength},
        heading="Metrics: trainable DeepMatching beside the untrained pyramid (HOG, ν = 1.4)",
        note=f"{len(pairs['x'])} held-out warp pairs (affine + thin-plate spline, strength "
        f"{method.source.strength:g}) with exact correspondences; acc@T: share of cells whose "
        "match, after reciprocal verification and densification (nearest verified match within "
        "8 px), is within T px; epe_px: mean end-point error (lower is better); verified: share "
        "of cells whose match passed verification; raw_acc@2: acc@2 of the plain argmax.",
    )


def draw_matches(method: Any, eval_set: ImageSet, path: Path, n: int = 6, seed: int = 0) -> None:
    """``path``: for ``n`` held-out pairs, x, x′, the exact displacement field and the matched
    one (densified; black: unmatched or no correspondence), colours on one scale."""
    pairs = held_out_pairs(eval_set, method.source.strength, seed, n)
    out = match_pairs(method.net_, pairs)
    truth = pairs["truth"].numpy() * STRIDE
    pred = out["dense"].numpy().astype(np.float64) * STRIDE
    truth[~pairs["valid"].numpy()] = np.nan
    pred[~(out["matched"] & pairs["valid"]).numpy()] = np.nan
    top = (
        float(np.nanmax(np.hypot(truth[..., 0], truth[..., 1]))) if np.isfinite(truth).any() else 1
    )

    def img(t: torch.Tensor) -> list[np.ndarray]:
        return list((t.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))

    rows = [
        img(pairs["x"]),
        img(pairs["x2"]),
        list(flow_to_rgb(truth, top)),
        list(flow_to_rgb(pred, top)),
    ]
    titles = ["x (reference)", "x′ (target)", "exact displacement", "matched displacement"]
    draw_rows(rows, titles, path, f"{method.name} on held-out pairs of {eval_set.name}")
