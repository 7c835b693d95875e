"""A cosine-similarity search index over embeddings, with metadata, that saves and loads.

:class:`EmbeddingIndex` wraps a faiss index of one of three kinds:

* ``"flat"`` (default) — exact inner-product search (``IndexFlatIP``); O(N·d) per query.
* ``"hnsw"`` — approximate graph search (``IndexHNSWFlat``, inner-product metric); sub-linear
  queries, about ``N·(d + 2·hnsw_m)·4`` bytes.
* ``"ivf"`` — approximate inverted-file search (``IndexIVFFlat``) with ``nlist ≈ 4·√N`` lists,
  trained by k-means on the embeddings it is built from; ``nprobe`` lists are visited per
  query. When N is below ``39·nlist`` (faiss's minimum of 39 training points per list) the
  index falls back to ``"flat"`` with a warning: at that size exact search is cheap anyway.

Embeddings are L2-normalised on ``add`` and on ``search``, so scores are cosine similarities in
[-1, 1] (all-zero rows stay zero and score 0 against everything).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from labelfree.data.imageset import DataError
from labelfree.evaluate.metrics import l2_normalize
from labelfree.graph.nn import check_matrix, make_index, set_search_depth
from labelfree.utils import (
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    kill_point_for_tests,
)

__all__ = ["EmbeddingIndex", "INDEX_FILE", "META_FILE", "save_index_folder"]

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
_KINDS = ("flat", "hnsw", "ivf")
_MIN_POINTS_PER_LIST = 39


class EmbeddingIndex:
    """Nearest-neighbour search by cosine similarity over a set of embeddings.

    Args:
        embeddings: ``(N, d)`` initial embeddings (N may be 0 for ``"flat"``/``"hnsw"``).
        paths: optional id or file path of each item (kept in order with the embeddings).
        labels: optional ``(N,)`` label of each item (for evaluation or display).
        kind: ``"flat"`` (exact), ``"hnsw"`` or ``"ivf"`` (approximate); see the module doc.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (higher = more accurate, slower).
        ef_construction: HNSW build breadth.
        nlist: IVF list count; default ``round(4·√N)``.
        nprobe: IVF lists visited per query; default ``max(1, nlist // 8)``.
        seed: seed of the IVF k-means.

    Attributes:
        kind: the kind actually built (``"flat"`` after an IVF fall-back).
        dim: embedding dimension.
        paths, labels: the metadata, or ``None`` when not given.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        paths: Sequence[str] | None = None,
        labels: np.ndarray | Sequence[Any] | None = None,
        kind: str = "flat",
        *,
        hnsw_m: int = 32,
        ef_search: int = 128,
        ef_construction: int = 80,
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
    ) -> None:
        if kind not in _KINDS:
            raise DataError(f"unknown index kind {kind!r}: choose one of {', '.join(_KINDS)}")
        x = check_matrix(embeddings, "embeddings")
        if x.shape[1] == 0:
            raise DataError("embeddings have dimension 0")
        self.dim = int(x.shape[1])
        self.requested_kind = kind
        self.kind = kind
        self.params: dict[str, Any] = {}
        self.paths: list[str] | None = None
        self.labels: np.ndarray | None = None
        xn = l2_normalize(x)
        if kind == "ivf":
            n = len(xn)
            nl = int(nlist) if nlist is not None else max(1, round(4 * math.sqrt(n)))
            if n < _MIN_POINTS_PER_LIST * nl:
                warnings.warn(
                    f"ivf index with nlist={nl} needs at least {_MIN_POINTS_PER_LIST * nl} "
                    f"embeddings to train, got {n}: using an exact flat index instead",
                    stacklevel=2,
                )
                self.kind = "flat"
            else:
                npb = int(nprobe) if nprobe is not None else max(1, nl // 8)
                self.params = {"nlist": nl, "nprobe": npb, "seed": int(seed)}
        if self.kind == "flat":
            self._index = make_index(self.dim, "flat")
        elif self.kind == "hnsw":
            self.params = {
                "hnsw_m": int(hnsw_m),
                "ef_search": int(ef_search),
                "ef_construction": int(ef_construction),
            }
            self._index = make_index(
                self.dim, "hnsw", hnsw_m=hnsw_m, ef_construction=ef_construction
            )
            set_search_depth(self._index, ef_search=ef_search)
        else:
            self._index = make_index(self.dim, "ivf", nlist=self.params["nlist"])
            faiss.extract_index_ivf(self._index).cp.seed = self.params["seed"]
            self._index.train(xn)
            set_search_depth(self._index, nprobe=self.params["nprobe"])
        self._add_normalized(xn, paths, labels)

    # ------------------------------------------------------------------ building
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _add_normalized(
        self,
        xn: np.ndarray,
        paths: Sequence[str] | None,
        labels: np.ndarray | Sequence[Any] | None,
    ) -> None:
        n_old, n_new = len(self), len(xn)
        if paths is not None and len(paths) != n_new:
            raise DataError(f"{len(paths)} paths for {n_new} embeddings")
        if labels is not None and len(labels) != n_new:
            raise DataError(f"{len(labels)} labels for {n_new} embeddings")
        # Metadata must be given for all items or none, so that position i always matches.
        if n_old > 0 and (paths is None) != (self.paths is None):
            raise DataError(
                "paths must be given on every add or on none "
                f"(the index {'has' if self.paths is not None else 'has no'} paths)"
            )
        if n_old > 0 and (labels is None) != (self.labels is None):
            raise DataError(
                "labels must be given on every add or on none "
                f"(the index {'has' if self.labels is not None else 'has no'} labels)"
            )
        if n_new:
            self._index.add(xn)
        if paths is not None:
            self.paths = (self.paths or []) + [str(p) for p in paths]
        if labels is not None:
            new = np.asarray(labels)
            self.labels = new.copy() if self.labels is None else np.concatenate([self.labels, new])

    def add(
        self,
        embeddings: np.ndarray,
        paths: Sequence[str] | None = None,
        labels: np.ndarray | Sequence[Any] | None = None,
    ) -> None:
        """Append ``(n, d)`` embeddings (L2-normalised here) and their metadata."""
        x = check_matrix(embeddings, "embeddings")
        self._check_dim(x, "embeddings")
        self._add_normalized(l2_normalize(x), paths, labels)

    def _check_dim(self, x: np.ndarray, what: str) -> None:
        if x.shape[1] != self.dim:
            raise DataError(
                f"{what} have dimension {x.shape[1]} but the index has dimension {self.dim}"
            )

    # ------------------------------------------------------------------ querying
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most cosine-similar indexed items for each query.

        Args:
            queries: ``(q, d)`` (or a single ``(d,)``) query embeddings.
            k: neighbours per query; clipped to the number of indexed items.

        Returns:
            ``(scores, indices)``, both ``(q, min(k, N))``, best first. ``scores`` are float32
            cosine similarities; ``indices`` are int64 positions into the indexed items (and
            into :attr:`paths` / :attr:`labels`). An approximate index may return fewer hits
            than asked for a query; missing slots hold index -1 and score -inf.

        Raises:
            DataError: a query dimension different from the index's, NaN/inf queries, or
                ``k < 1``.
        """
        q = check_matrix(queries, "queries")
        self._check_dim(q, "queries")
        if int(k) < 1:
            raise DataError(f"k must be >= 1, got {k}")
        k_eff = min(int(k), len(self))
        if k_eff == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, indices = self._index.search(l2_normalize(q), k_eff)
        indices = indices.astype(np.int64, copy=False)
        scores[indices < 0] = -np.inf
        return scores, indices

    # ------------------------------------------------------------------ persistence
    def meta(self) -> dict[str, Any]:
        """The metadata written to ``meta.json`` by :meth:`save`."""
        return {
            "kind": self.kind,
            "requested_kind": self.requested_kind,
            "dim": self.dim,
            "count": len(self),
            "params": self.params,
            "paths": self.paths,
            "labels": None if self.labels is None else self.labels.tolist(),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss`` and ``meta.json`` into ``directory`` (created if needed).

        Each file is written atomically (temporary file, then rename); the index file is
        written first, so a ``meta.json`` always describes a complete index file.
        Returns the directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blob = faiss.serialize_index(self._index)
        atomic_write_bytes(directory / INDEX_FILE, np.asarray(blob).tobytes())
        kill_point_for_tests("index")  # test hook: a kill between the two files
        atomic_write_json(directory / META_FILE, self.meta())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingIndex:
        """Load an index written by :meth:`save`.

        Raises:
            DataError: the directory does not exist, lacks ``index.faiss`` or ``meta.json``,
                or the two disagree.
        """
        directory = Path(directory)
        index_path, meta_path = directory / INDEX_FILE, directory / META_FILE
        if not directory.is_dir():
            raise DataError(f"{directory}: no such directory (expected a saved search index)")
        missing = [p.name for p in (index_path, meta_path) if not p.is_file()]
        if missing:
            raise DataError(
                f"{directory}: no saved search index here (missing {', '.join(missing)}; "
                "build one with `labelfree index` or EmbeddingIndex(...).save(directory))"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{meta_path}: unreadable index metadata ({exc})") from exc
        try:
            blob = np.frombuffer(index_path.read_bytes(), dtype=np.uint8)
            index = faiss.deserialize_index(blob)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"{index_path}: unreadable faiss index ({exc})") from exc
        if index.d != meta.get("dim") or index.ntotal != meta.get("count"):
            raise DataError(
                f"{directory}: {INDEX_FILE} holds {index.ntotal} vectors of dimension {index.d} "
                f"but {META_FILE} says {meta.get('count')} of dimension {meta.get('dim')}"
            )
        obj = cls.__new__(cls)
        obj.dim = int(index.d)
        obj.kind = meta["kind"]
        obj.requested_kind = meta.get("requested_kind", obj.kind)
        obj.params = dict(meta.get("params") or {})
        obj.paths = meta.get("paths")
        labels = meta.get("labels")
        obj.labels = None if labels is None else np.asarray(labels)
        if obj.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = int(obj.params["nprobe"])
        elif obj.kind == "hnsw":
            index.hnsw.efSearch = int(obj.params["ef_search"])
        obj._index = index
        return obj

    def __repr__(self) -> str:
        return f"EmbeddingIndex(kind={self.kind!r}, dim={self.dim}, count={len(self)})"


def save_index_folder(
    directory: str | Path,
    index: EmbeddingIndex,
    embeddings: np.ndarray | None = None,
    model_file: str | Path | None = None,
) -> Path:
    """Write a complete index folder (what ``labelfree index`` builds): the index, its metadata,
    ``embeddings.npy`` and a copy of the model as ``model.pt``.

    Everything is written to a temporary sibling folder that then takes the place of
    ``directory``, so a kill leaves either the previous folder untouched or the new one complete,
    never a mix (nor a stale ``graph.npz`` of the previous embeddings). The swap is two renames;
    a kill between them leaves the previous folder intact under ``.<name>.old<pid>``.

    Raises:
        DataError: ``directory`` is a file, or a non-empty folder that holds no saved index
            (it is never replaced, so that an ``--overwrite`` typo cannot delete other files).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: exists and is not a folder")
    if (
        directory.is_dir()
        and any(directory.iterdir())
        and not (directory / META_FILE).exists()
        and not (directory / INDEX_FILE).exists()
    ):
        raise DataError(f"{directory}: refusing to replace a folder that holds no search index")
    staging = directory.with_name(f".{directory.name}.tmp{os.getpid()}")
    old = directory.with_name(f".{directory.name}.old{os.getpid()}")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    index.save(staging)
    if embeddings is not None:
        atomic_save_npy(staging / "embeddings.npy", np.asarray(embeddings))
    if model_file is not None:
        atomic_write_bytes(staging / "model.pt", Path(model_file).read_bytes())
    if directory.exists():
        os.replace(directory, old)
    os.replace(staging, directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory
