"""Olympic Sports frames (or any sports video frames) from a local copy, with exemplars.

:func:`load_olympic_sports` reads a documented folder layout (nothing is downloaded) into a
frame-sequence :class:`ImageSet` (:mod:`labelfree.data.sequence_type`), plus the optional
exemplar annotations as :class:`~labelfree.data.sequence_type.Exemplars`.

Cost model: one directory listing per video, then the decoding pool
(:func:`~labelfree.data.batch_decode.decode_files`); annotations are one CSV read per sport.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .imageset import DataError, ImageSet
from .sequence_type import Exemplars

#: Image file suffixes the Olympic Sports loader reads.
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _frame_number(path: Path) -> int:
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    if not digits:
        raise DataError(f"{path}: a frame file name must contain its frame number")
    return int(digits)


def load_olympic_sports(
    root: str | os.PathLike[str],
    image_size: int = 64,
    sports: list[str] | None = None,
    on_error: str = "fail",
    workers: int = 2,
    progress: bool = True,
) -> ImageSet:
    """Olympic Sports person crops (or any sports video frames) from a local folder.

    Layout (nothing is downloaded; crops as in seed 001 §3.3.1 must be made beforehand)::

        <root>/frames/<sport>/<video>/<frame>.png|jpg   one person crop per frame; the frame
                                                        number is the digits of the file name
        <root>/exemplars/<sport>.csv                    optional: the exemplar annotations

    Each annotation file has a header ``query,label,frame,flip`` and one row per labelled frame:
    ``query`` and ``frame`` are paths relative to ``frames/`` (``long_jump/v01/00042.png``),
    ``label`` is ``pos`` or ``neg``, ``flip`` is 1 when the frame matches the *mirrored* query
    (the ``flipvals`` of the CliqueCNN release's labels), else 0.

    Returns:
        An :class:`ImageSet` of all frames (sorted by sport, video, frame number) with
        ``labels`` = sport id, ``meta["video"]`` / ``meta["frame"]`` (the frame-sequence
        type), ``meta["video_names"]`` and, when annotation files exist,
        ``meta["exemplars"]`` — an :class:`~labelfree.evaluate.exemplar.Exemplars` over the
        returned order (its indices refer to this collection: subsets do not carry it).

    Raises:
        DataError: a missing folder, a sport without frames, an annotation naming a frame that
            is not in ``frames/`` (or was skipped as unreadable), or a malformed row.
    """
    import csv

    from .batch_decode import decode_files, finish_imageset

    base = Path(root).expanduser()
    frames_dir = base / "frames"
    if not frames_dir.is_dir():
        raise DataError(f"{base}: no frames/ folder (layout: frames/<sport>/<video>/<frame>.png)")
    names = sorted(p.name for p in frames_dir.iterdir() if p.is_dir())
    if sports is not None:
        missing = sorted(set(sports) - set(names))
        if missing:
            raise DataError(f"{frames_dir}: no folder for sport(s) {', '.join(missing)}")
        names = [n for n in names if n in set(sports)]
    paths: list[Path] = []
    video, frame, labels, video_names = [], [], [], []
    for s_id, sport in enumerate(names):
        vids = sorted(p for p in (frames_dir / sport).iterdir() if p.is_dir())
        if not vids:
            raise DataError(f"{frames_dir / sport}: no video folders")
        for vdir in vids:
            files = [p for p in vdir.iterdir() if p.suffix.lower() in _FRAME_SUFFIXES]
            files.sort(key=_frame_number)
            nums = [_frame_number(p) for p in files]
            if len(set(nums)) != len(nums):
                raise DataError(f"{vdir}: two files share a frame number")
            v_id = len(video_names)
            video_names.append(f"{sport}/{vdir.name}")
            paths += files
            video += [v_id] * len(files)
            frame += nums
            labels += [s_id] * len(files)
    if not paths:
        raise DataError(f"{frames_dir}: no frames found")
    images, kept, skipped = decode_files(
        paths,
        image_size,
        on_error=on_error,
        workers=workers,
        progress=progress,  # type: ignore[arg-type]
    )
    video_a = np.asarray(video, dtype=np.int64)[kept]
    frame_a = np.asarray(frame, dtype=np.int64)[kept]
    rel = [p.relative_to(frames_dir).as_posix() for p in paths]
    meta: dict = {
        "source": "olympic-sports",
        "hflip": True,
        "video": video_a,
        "frame": frame_a,
        "video_names": video_names,
        "per_item": ("video", "frame"),
    }
    index = {rel[k]: i for i, k in enumerate(kept)}
    ann_dir = base / "exemplars"
    if ann_dir.is_dir():
        rows: dict[int, dict[str, list]] = {}
        for sport in names:
            path = ann_dir / f"{sport}.csv"
            if not path.exists():
                continue
            with open(path, newline="") as fh:
                for line_no, row in enumerate(csv.DictReader(fh), start=2):
                    where = f"{path} line {line_no}"
                    try:
                        q, f, kind, flip = row["query"], row["frame"], row["label"], row["flip"]
                    except KeyError as exc:
                        raise DataError(f"{path}: header must be query,label,frame,flip") from exc
                    for p in (q, f):
                        if p not in index:
                            raise DataError(f"{where}: {p} is not a (readable) frame of frames/")
                    if kind not in ("pos", "neg") or flip not in ("0", "1"):
                        raise DataError(f"{where}: label must be pos|neg and flip 0|1")
                    r = rows.setdefault(index[q], {"pos": [], "neg": [], "pf": [], "nf": []})
                    r[kind].append(index[f])
                    r["pf" if kind == "pos" else "nf"].append(flip == "1")
        keep_q = [q for q, r in rows.items() if r["pos"] and r["neg"]]
        meta["exemplars"] = Exemplars(
            queries=np.asarray(keep_q, dtype=np.int64),
            positives=[np.asarray(rows[q]["pos"], dtype=np.int64) for q in keep_q],
            negatives=[np.asarray(rows[q]["neg"], dtype=np.int64) for q in keep_q],
            pos_flip=[np.asarray(rows[q]["pf"], dtype=bool) for q in keep_q],
            neg_flip=[np.asarray(rows[q]["nf"], dtype=bool) for q in keep_q],
        )
    return finish_imageset(
        where=str(base),
        name=f"olympic-sports:{base.name}",
        paths=[str(p) for p in paths],
        images=images,
        kept=kept,
        skipped=skipped,
        total=len(paths),
        labels=np.asarray(labels),
        class_names=names,
        meta=meta,
    )
