"""One entry point for every data source: :func:`load_data` takes a short spec string.

Spec forms:

* ``"mnist5k"``, ``"mnist5k:train"``, ``"mnist5k:test"``, ``"mnist5k:all"`` — bundled
  (:mod:`labelfree.data.bundled`); no split means ``all``.
* ``"digits[:train|test|all]"`` — likewise.
* ``"mnist-numbers[:train|test|all]"`` — the many-class set: two-digit numbers written with
  MNIST-5k digits, 50 train and 50 disjoint unseen test classes, 50 images each, 40 px
  (:mod:`labelfree.data.numbers`).
* ``"synthetic-poses[:train|test|all]"`` — generated frame sequences of an articulated figure
  with pose ground truth and ``meta["video"]`` / ``meta["frame"]``
  (:mod:`labelfree.data.sequences`; 48 px unless ``image_size``); train and test hold
  disjoint videos.
* ``"synthetic-faces:train|test"``, ``"synthetic-arm:train|test"`` — generated sets with exact
  landmarks / optical flow (:mod:`labelfree.data.synthetic`; 64 px unless ``image_size``).
* ``"synthetic-sprites:train|test"`` — generated videos of moving textured objects with exact
  flow, object ids and category masks (:mod:`labelfree.data.synth_sprites`; 64 px likewise).
* ``"celeba-mafl:train|test|celeba"``, ``"aflw:train|test"``, ``"300w:train|test"`` — face
  landmark sets under the data root (:mod:`labelfree.data.landmark_sets`; folders ``celeba``,
  ``MTFL``, ``300W``).
* ``"cub200:train|test|all"``, ``"cars196:..."``, ``"sop:..."`` — benchmarks
  (:mod:`labelfree.data.benchmarks`). The split is required, so that nobody trains on the test
  classes by accident.
* a path to an existing folder — :func:`~labelfree.data.folder.load_folder`;
* a path to an existing ``.csv``, ``.tsv`` or ``.txt`` file —
  :func:`~labelfree.data.folder.load_list`.

An existing path always wins over a dataset name.

Benchmark root: the ``root`` argument, else the environment variable ``LABELFREE_DATA_ROOT``.
Either may be the dataset's own folder, or a parent folder holding it under its standard name
(``CUB_200_2011``, ``cars196``, ``Stanford_Online_Products``); the parent form is checked
first. E.g. with ``LABELFREE_DATA_ROOT=/data``, ``cub200:train`` reads
``/data/CUB_200_2011/images.txt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from . import benchmarks, bundled, landmark_sets, numbers, sequences, synthetic
from .folder import check_on_error, load_folder, load_list
from .imageset import DataError, ImageSet

__all__ = ["DATA_ROOT_ENV", "available_datasets", "load_data"]

#: Environment variable naming the folder that holds the benchmark folders.
DATA_ROOT_ENV = "LABELFREE_DATA_ROOT"

#: Largest side folders and list files get when ``image_size`` is not given: below it they keep
#: their native (median) size, above it they are reduced to it (``native_side``).
DEFAULT_FOLDER_SIZE = 64

_BUNDLED: dict[str, Callable[..., ImageSet]] = {
    "mnist5k": bundled.mnist5k,
    "digits": bundled.digits,
    "mnist-numbers": numbers.mnist_numbers,
    "synthetic-poses": sequences.synthetic_poses,
}
_BENCHMARK_LOADERS: dict[str, Callable[..., ImageSet]] = {
    "cub200": benchmarks.cub200,
    "cars196": benchmarks.cars196,
    "sop": benchmarks.sop,
}
#: Generated sets with exact geometry (:mod:`labelfree.data.synthetic`); split train|test.
_SYNTHETIC: dict[str, Callable[..., ImageSet]] = {
    "synthetic-faces": synthetic.synthetic_faces,
    "synthetic-arm": synthetic.arm_sequence,
    "synthetic-sprites": synthetic.sprite_videos,
}
_LIST_SUFFIXES = (".csv", ".tsv", ".txt")


def available_datasets() -> list[str]:
    """The dataset names :func:`load_data` knows, each with its splits (``mnist5k:train``...)."""
    names = []
    for name in _BUNDLED:
        names += [f"{name}:{s}" for s in ("train", "test", "all")]
    for name in _BENCHMARK_LOADERS:
        names += [f"{name}:{s}" for s in ("train", "test", "all")]
    for name in _SYNTHETIC:
        names += [f"{name}:{s}" for s in ("train", "test")]
    names += ["celeba-mafl:train", "celeba-mafl:test", "celeba-mafl:celeba", "aflw:train"]
    names += ["aflw:test", "300w:train", "300w:test", "300w:common", "300w:challenging"]
    return names


def _known_names() -> str:
    return ", ".join(
        list(_BUNDLED)
        + list(_BENCHMARK_LOADERS)
        + list(_SYNTHETIC)
        + list(landmark_sets.LANDMARK_SETS)
    )


def _benchmark_root(name: str, root: str | os.PathLike[str] | None) -> Path:
    standard = benchmarks.BENCHMARKS[name].folder
    given = root if root is not None else os.environ.get(DATA_ROOT_ENV) or None
    if given is None:
        raise benchmarks.layout_error(
            name,
            None,
            f"no data root given: pass root=<folder> or set {DATA_ROOT_ENV} to the folder "
            f"that holds {standard}/",
        )
    base = Path(given).expanduser()
    nested = base / standard
    return nested if nested.is_dir() else base


def load_data(
    spec: str | os.PathLike[str],
    image_size: int | None = None,
    on_error: str = "fail",
    root: str | os.PathLike[str] | None = None,
    per_class: int | None = None,
    seed: int = 0,
    workers: int = 2,
    progress: bool = True,
    stream: bool | None = None,
) -> ImageSet:
    """Load a data source named by ``spec`` (see the module docstring for the forms).

    Args:
        spec: dataset name with optional split, or a folder / list file path.
        image_size: output side. ``None`` means each source's default: native 28 px for
            mnist5k, 32 px for digits, 40 px for mnist-numbers; for folders and list files the images' own (median)
            size, at most 64 px (never upsized); 64 px for benchmarks.
        on_error: ``"fail"`` or ``"skip"`` unreadable files (file-based sources).
        root: benchmark data root (overrides ``LABELFREE_DATA_ROOT``).
        per_class: keep at most this many images per class, drawn with ``seed``
            (:meth:`ImageSet.per_class`; needs labels).
        seed: seed for ``per_class``.
        workers: decoding threads (file-based sources).
        progress: progress bar on a terminal (file-based sources).
        stream: folders and list files: decode into an on-disk store read on demand, so that
            a collection larger than memory trains in bounded memory (``None``: automatically,
            above 1 GiB of decoded pixels or a quarter of the available memory).

    Raises:
        DataError: unknown dataset name (the message lists the known ones), a path that does
            not exist, or any error of the underlying loader.
    """
    on_error = check_on_error(on_error)
    text = os.fspath(spec)
    if not text.strip():
        raise DataError(f"empty data spec; use one of {_known_names()} or a folder / list path")
    path = Path(text).expanduser()
    if path.exists():
        kwargs = dict(
            image_size=image_size,
            size_cap=DEFAULT_FOLDER_SIZE,
            on_error=on_error,
            workers=workers,
            progress=progress,
            stream=stream,
        )
        if path.is_dir():
            data = load_folder(path, **kwargs)  # type: ignore[arg-type]
        elif path.suffix.lower() in _LIST_SUFFIXES:
            data = load_list(path, **kwargs)  # type: ignore[arg-type]
        else:
            raise DataError(
                f"{path} is a file but not a list (.csv, .tsv or .txt); pass its folder, "
                "or a list file naming the images"
            )
    else:
        if stream:
            raise DataError(
                f"--stream applies to folders and list files; {text!r} is built in memory"
            )
        name, _, split = text.partition(":")
        name = name.strip().lower()
        split = split.strip().lower()
        if name in _BUNDLED:
            data = _BUNDLED[name](split or "all", image_size=image_size)
        elif name in _SYNTHETIC:
            if not split:
                raise DataError(f"{name} needs a split: {name}:train or {name}:test")
            data = _SYNTHETIC[name](split, size=64 if image_size is None else image_size)
        elif name in landmark_sets.LANDMARK_SETS:
            data = landmark_sets.load_landmark_set(name, split, root, image_size)
        elif name in _BENCHMARK_LOADERS:
            if not split:
                raise DataError(
                    f"{name} needs a split: {name}:train (classes used for training) or "
                    f"{name}:test (unseen classes for evaluation), or {name}:all"
                )
            bench_root = _benchmark_root(name, root)
            data = _BENCHMARK_LOADERS[name](
                bench_root,
                split,
                image_size=benchmarks.DEFAULT_IMAGE_SIZE if image_size is None else image_size,
                on_error=on_error,
                workers=workers,
                progress=progress,
            )
        elif _looks_like_path(text):
            raise DataError(
                f"{text!r} is neither a known dataset ({_known_names()}) nor an existing path"
            )
        else:
            raise DataError(
                f"unknown dataset {name!r} (and no such path); available: "
                f"{', '.join(available_datasets())}, or an existing folder or list file"
            )
    if per_class is not None:
        data = data.per_class(int(per_class), seed=seed)
    return data


def _looks_like_path(text: str) -> bool:
    """Whether a spec that names nothing was meant as a path rather than a dataset name."""
    return (
        "/" in text
        or os.sep in text
        or text.startswith((".", "~"))
        or ("." in text and ":" not in text)
    )
