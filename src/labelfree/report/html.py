"""The report a person looks at: an HTML page per run, a retrieval grid and the loss curve."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from labelfree.data.imageset import ImageSet  # noqa: E402
from labelfree.evaluate.results import RETRIEVAL_COLUMNS, Metrics  # noqa: E402
from labelfree.graph.knn import knn  # noqa: E402


def retrieval_grid(
    images: ImageSet,
    emb: np.ndarray,
    path: str | Path,
    n_queries: int = 8,
    k: int = 8,
    seed: int = 0,
) -> None:
    """Query + top-``k`` neighbours per row; a green/red frame marks same/other class."""
    rng = np.random.default_rng(seed)
    n = len(images)
    k = min(k, n - 1)
    queries = np.sort(rng.choice(n, size=min(n_queries, n), replace=False))
    # Search one more, then drop the query itself from its own row.
    sims, idx = knn(emb, min(k + 1, n), queries=emb[queries], exclude_self=False)
    rows = []
    for q, r_idx, r_sim in zip(queries, idx, sims, strict=True):
        keep = r_idx != q
        rows.append((q, r_idx[keep][:k], r_sim[keep][:k]))
    fig, axes = plt.subplots(
        len(rows), k + 1, figsize=(1.3 * (k + 1), 1.4 * len(rows)), squeeze=False
    )
    for ax_row, (q, nbrs, scores) in zip(axes, rows, strict=True):
        _show(ax_row[0], images.images[q], "query", "#1f4e9c")
        for ax, j, s in zip(ax_row[1 : 1 + len(nbrs)], nbrs, scores, strict=True):
            color = "#777777"
            if images.labels is not None:
                color = "#1a9c3c" if images.labels[j] == images.labels[q] else "#d62728"
            _show(ax, images.images[j], f"{s:.2f}", color)
        for ax in ax_row[1 + len(nbrs) :]:
            ax.axis("off")
    fig.suptitle(f"retrieval: query, then top-{k} (green = same class, red = other)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _show(ax: Any, img: np.ndarray, title: str, color: str) -> None:
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(color)
        spine.set_linewidth(3)


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_curve(records: list[dict[str, Any]], path: str | Path) -> None:
    """Training loss per epoch, one panel per stage (distillation and method losses differ in
    scale by orders of magnitude)."""
    stages: dict[str, list[float]] = {}
    for r in records:
        if r.get("loss") is not None:
            stages.setdefault(r["stage"], []).append(r["loss"])
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4 * max(1, len(stages)), 3))
    for ax, (name, losses) in zip(np.atleast_1d(axes), stages.items(), strict=False):
        ax.plot(np.arange(1, len(losses) + 1), losses, marker="o", ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def metrics_table_rows(
    representations: dict[str, dict[str, float]], metrics: tuple[str, ...] = RETRIEVAL_COLUMNS
) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows (one per representation) of the given metrics."""
    present = [m for m in metrics if any(m in v for v in representations.values())]
    rows = [
        [name] + [f"{vals[m]:.3f}" if m in vals else "" for m in present]
        for name, vals in representations.items()
    ]
    return ["representation", *present], rows


def write_report(run_dir: str | Path) -> Path:
    """Render ``report.html`` (and ``loss.png``) from the files of a run folder."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    records = read_log(run_dir)
    if records:
        loss_curve(records, run_dir / "loss.png")
    m = Metrics.from_json(metrics)
    run, reps = m.run, dict(m.representations)
    if "embedding" in reps:  # name the learned row by its method and start
        reps[f"embedding: {run.get('method', '')} ({run.get('start', '')})"] = reps.pop("embedding")
    cols, rows = metrics_table_rows(reps, m.columns)
    best = {
        c: (max if m.better_is_higher(c) else min)(
            (float(r[i + 1]) for r in rows if r[i + 1]), default=None
        )
        for i, c in enumerate(cols[1:])
    }
    table = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>\n"
    for r in rows:
        cells = [f"<td>{html.escape(r[0])}</td>"]
        for c, v in zip(cols[1:], r[1:], strict=True):
            bold = v and best[c] is not None and float(v) == best[c]
            cells.append(f"<td>{'<b>' + v + '</b>' if bold else v}</td>")
        table += "<tr>" + "".join(cells) + "</tr>\n"
    label = f"{run.get('method', config['method'])}" + (
        f" — start: {run['start']}" if run.get("start") else ""
    )
    start_note = {
        "scratch": "from scratch: a CNN with random weights",
        "distill": "pretrained-style start: a CNN first distilled from g(x) without labels",
        "feature-head": "pretrained-style start: an MLP over the cached g(x)",
    }.get(run.get("start", ""), "")
    heading, note = m.heading, m.note
    params = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in sorted(config.get("params", {}).items())
    )
    structure_html = ""
    for r in records:
        stats = {k[10:]: v for k, v in r.items() if k.startswith("structure/")}
        if set(stats) - {"structure_seconds", "embed_seconds"}:
            shown = ", ".join(f"{k} = {v:.3f}" for k, v in stats.items() if isinstance(v, float))
            structure_html += f"<li>{html.escape(r['stage'])} round {r['round']}: {shown}</li>"
    imgs = "".join(
        f'<h2>{title}</h2><img src="{f}" alt="{title}">'
        for title, f in (
            ("Retrieval", "retrieval.png"),
            ("Learned landmarks", "landmarks.png"),
            ("Embedding colours (first three label dimensions)", "embedding.png"),
            ("Frames, exact flow, objects and the learned embedding", "flow.png"),
            ("Dense matches beside the exact correspondences", "matches.png"),
            ("Training loss", "loss.png"),
        )
        if (run_dir / f).exists()
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>labelfree run: {html.escape(label)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>labelfree run: {html.escape(label)}</h1>
<p>{html.escape(start_note + ". " if start_note else "")}Trained on <b>{html.escape(str(run.get("train", "")))}</b>
({run.get("n_train", "?")} images, labels unused), evaluated on held-out
<b>{html.escape(str(run.get("eval", "")))}</b> ({run.get("n_eval", "?")} images);
fit took {run.get("fit_seconds", 0):.1f} s.</p>
<h2>{html.escape(heading)}</h2>
<table>{table}</table>
<p class="note">{html.escape(note)}</p>
{"<h2>Structure diagnostics (against evaluation labels, unused in training)</h2><ul>" + structure_html + "</ul>" if structure_html else ""}
{imgs}
<h2>Options</h2><table>{params}</table>
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page)
    return out
