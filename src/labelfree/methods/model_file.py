"""The model file every method writes: one torch file holding ``format``, ``version``,
``method``, ``params`` (the options), the network's config and state, and what the method adds
(the fitted g(x), an extra module's state, the history)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from labelfree.data.imageset import DataError

MODEL_FORMAT = "labelfree-model"


def read_model_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise DataError(f"{path}: cannot read model file ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise DataError(f"{path}: not a labelfree model file")
    return state
