"""Small shared helpers: atomic file writes, seeding, device choice."""

from __future__ import annotations

import io
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (an atomic operation on POSIX file systems).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON in the dict's own order (tables read from it keep their row order)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def choose_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU.

    A device this machine does not have, or a name torch does not know, is a one-line
    :class:`~labelfree.data.imageset.DataError` naming ``--device`` (checked before any work
    starts, not as torch's assertion deep inside the first transfer).
    """
    from labelfree.data.imageset import DataError

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DataError(
            f"--device {device!r}: not a device name; use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DataError(
                f"--device {device}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use --device cpu or --device auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DataError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0"
            )
    elif dev.type != "cpu":
        raise DataError(f"--device {device}: only cpu and cuda devices are supported")
    return dev


# Test hook (tests/test_interrupt.py): with LABELFREE_TEST_KILL_AT=<point> in the environment the
# process SIGKILLs itself the (LABELFREE_TEST_KILL_AFTER + 1)-th time it passes that point, so that a
# test kills a run deterministically inside one stage. Points: "features" (g(x) computed, not yet
# cached), "<stage>" (after the first step of an epoch of that stage: "distill", "hadsell", ...),
# "<stage>:structure" (structure step done), "evaluate" (before each representation), "index"
# (index file written, metadata not yet). Without the variable it does nothing.
_KILL_COUNTS: dict[str, int] = {}


def kill_point_for_tests(point: str) -> None:
    if os.environ.get("LABELFREE_TEST_KILL_AT") != point:
        return
    _KILL_COUNTS[point] = _KILL_COUNTS.get(point, 0) + 1
    if _KILL_COUNTS[point] > int(os.environ.get("LABELFREE_TEST_KILL_AFTER", "0")):
        os.kill(os.getpid(), signal.SIGKILL)


def cache_dir() -> Path:
    """The on-disk cache (g(x), distilled starts, decoded pixels): ``$LABELFREE_CACHE`` or
    ``~/.cache/labelfree``."""
    root = os.environ.get("LABELFREE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "labelfree"
    )
    return Path(root)
