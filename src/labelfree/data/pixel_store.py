"""Decoded pixels on disk, read on demand: collections larger than memory.

:func:`decode_to_disk` decodes image files in chunks (the same thread pool as the in-RAM path,
:func:`~labelfree.data.batch_decode.decode_files`) and appends the rows to one raw ``uint8``
file, ``N × H × W × 3`` bytes, in the cache (``$LABELFREE_CACHE/pixels``); a second run over the
same files (same paths, sizes, modification times and image size) reuses it without decoding.
:class:`DiskPixels` is the array-like an :class:`~labelfree.data.imageset.ImageSet` then holds
instead of an ``ndarray``: indexing it (``pixels[idx]``, ``pixels[a:b]``) reads just those rows
with ``os.pread`` — plain reads, so the pages live in the kernel's cache and not in the
process's resident memory, which stays bounded by a batch whatever the collection's size.

Cost model: a batch of B rows is at most B reads of ``H·W·3`` bytes (fewer for runs of
consecutive rows); 128 images of 128 px are 6.3 MB. Decoding writes the file once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelfree.data.imageset import DataError
from labelfree.utils import atomic_write_bytes

#: Files decoded per chunk when writing the store (a chunk of decoded rows is held in RAM).
DECODE_CHUNK = 2048


class DiskPixels:
    """A read-only ``(N, H, W, 3)`` uint8 array-like over a raw file (rows in order), optionally
    through a row map (``rows``: the file rows of this view, e.g. a subset). Picklable: a
    DataLoader worker reopens the file."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], rows=None) -> None:
        self.path = str(path)
        self._file_shape = tuple(int(s) for s in shape)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n = self._file_shape[0] if self.rows is None else len(self.rows)
        self.shape = (n, *self._file_shape[1:])
        self._row_bytes = int(np.prod(self._file_shape[1:]))
        self._fd: int | None = None
        self._pid: int | None = None

    # ---- array-like ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"index {key} out of range for {self.shape[0]} images")
            return self._read(np.array([i]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(self.shape[0])[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < -self.shape[0] or idx.max() >= self.shape[0]):
            raise IndexError(f"index out of range for {self.shape[0]} images")
        return self._read(np.where(idx < 0, idx + self.shape[0], idx))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def take(self, idx: np.ndarray) -> DiskPixels:
        """A view of rows ``idx`` (nothing is read)."""
        idx = np.asarray(idx, dtype=np.int64)
        rows = idx if self.rows is None else self.rows[idx]
        return DiskPixels(self.path, self._file_shape, rows)

    def chunks(self, size: int = 1024) -> Iterator[np.ndarray]:
        """The rows in order, ``size`` at a time."""
        for s in range(0, self.shape[0], size):
            yield self[s : s + size]

    # ---- reading -------------------------------------------------------------------------------
    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def _read(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (view positions), reading each run of consecutive file rows at once."""
        file_rows = idx if self.rows is None else self.rows[idx]
        out = np.empty((len(idx), *self.shape[1:]), dtype=np.uint8)
        if not len(idx):
            return out
        order = np.argsort(file_rows, kind="stable")
        sorted_rows = file_rows[order]
        flat = out.reshape(len(idx), -1)
        fd, rb = self._handle(), self._row_bytes
        # runs of consecutive file rows (a repeated row breaks a run, so it is read once per use)
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run in np.split(np.arange(len(idx)), breaks):
            first = int(sorted_rows[run[0]])
            data = os.pread(fd, rb * len(run), first * rb)
            block = np.frombuffer(data, np.uint8)
            if block.size != len(run) * rb:
                raise DataError(f"{self.path}: pixel cache file is shorter than expected")
            flat[order[run]] = block.reshape(len(run), rb)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass


def store_key(paths: Sequence[str], image_size: int) -> str:
    """Cache key of a decoded store: the files (path, size, modification time) and the size."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image_size}\n".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode_to_disk(
    paths: Sequence[str],
    image_size: int,
    on_error: str,
    workers: int,
    progress: bool,
    root: Path,
    contexts: Sequence[str] | None = None,
    description: str = "decoding images",
) -> tuple[DiskPixels, np.ndarray, list[str]]:
    """Decode ``paths`` at ``image_size`` into a store under ``root`` (or reuse the one already
    there). Returns ``(pixels, kept, skipped)`` like
    :func:`~labelfree.data.batch_decode.decode_files`."""
    from labelfree.data.batch_decode import decode_files

    root.mkdir(parents=True, exist_ok=True)
    key = store_key(paths, image_size)
    data, index = root / f"{key}.u8", root / f"{key}.json"
    if data.exists() and index.exists():
        info = json.loads(index.read_text())
        shape = tuple(info["shape"])
        if data.stat().st_size == int(np.prod(shape)):
            return DiskPixels(data, shape), np.asarray(info["kept"], np.int64), info["skipped"]
    tmp = data.with_suffix(f".tmp{os.getpid()}")
    kept: list[np.ndarray] = []
    skipped: list[str] = []
    try:
        with open(tmp, "wb") as fh:
            for s in range(0, len(paths), DECODE_CHUNK):
                part = list(paths[s : s + DECODE_CHUNK])
                ctx = None if contexts is None else list(contexts[s : s + DECODE_CHUNK])
                done = f"{description} {s + len(part)}/{len(paths)}"
                images, k, sk = decode_files(
                    part, image_size, on_error, workers, progress, ctx, done
                )
                fh.write(np.ascontiguousarray(images).tobytes())
                kept.append(k + s)
                skipped += sk
        n = int(sum(len(k) for k in kept))
        shape = (n, image_size, image_size, 3)
        kept_all = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        os.replace(tmp, data)
        info = {"shape": shape, "kept": kept_all.tolist(), "skipped": skipped}
        atomic_write_bytes(index, json.dumps(info).encode())
    finally:
        tmp.unlink(missing_ok=True)
    return DiskPixels(data, shape), kept_all, skipped


#: ``stream=None`` (auto) streams a collection whose decoded pixels exceed this many bytes or a
#: quarter of the memory available now, whichever is smaller.
STREAM_ABOVE_BYTES = 1 << 30


def should_stream(n: int, image_size: int | None, stream: bool | None) -> bool:
    """Whether ``n`` images of ``image_size`` px go to the on-disk store (see
    :data:`STREAM_ABOVE_BYTES`); ``stream`` True / False forces it."""
    from labelfree.data.imageset import available_memory

    if stream is not None:
        if stream and image_size is None:
            raise DataError("--stream needs --image-size (a store holds images of one size)")
        return bool(stream)
    if image_size is None:
        return False
    need = n * image_size * image_size * 3
    return need > min(STREAM_ABOVE_BYTES, available_memory() // 4)


def decode_collection(
    paths: Sequence[str],
    image_size: int | None,
    on_error: str,
    workers: int,
    progress: bool,
    stream: bool | None = None,
    contexts: Sequence[str] | None = None,
    description: str = "decoding images",
) -> tuple[np.ndarray | DiskPixels, np.ndarray, list[str]]:
    """:func:`~labelfree.data.batch_decode.decode_files` into memory, or
    :func:`decode_to_disk` when :func:`should_stream` says so."""
    from labelfree.data.batch_decode import decode_files
    from labelfree.utils import cache_dir

    if should_stream(len(paths), image_size, stream) and len(paths):
        root = cache_dir() / "pixels"
        return decode_to_disk(
            paths, image_size, on_error, workers, progress, root, contexts, description
        )
    return decode_files(paths, image_size, on_error, workers, progress, contexts, description)
