"""The model file every method writes: one torch file holding ``format``, ``version``,
``method``, ``params`` (the options), the network's config and state, the image size, the
training history, and what the method adds (the fitted g(x), an extra module's state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from labelfree.data.imageset import DataError
from labelfree.utils import atomic_torch_save

MODEL_FORMAT = "labelfree-model"


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in module.state_dict().items()}


def write_model_file(path: str | Path, method: Any, net: nn.Module, **extra: Any) -> None:
    """Write ``method`` (options, ``net``, image size, history and ``extra``) atomically."""
    atomic_torch_save(
        {
            "format": MODEL_FORMAT,
            "version": 1,
            "method": method.name,
            "params": method.get_params(),
            "net_config": net.config(),
            "net_state": _cpu_state(net),
            "image_size": method.image_size_,
            "history": method.history_,
            **extra,
        },
        path,
    )


def read_model_file(path: str | Path, expected: str = "") -> dict[str, Any]:
    """The contents of a model file; a missing, damaged or foreign file — or, with
    ``expected``, a model of another method — is a :class:`DataError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise DataError(f"{path}: cannot read model file ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise DataError(f"{path}: not a labelfree model file")
    if expected and state.get("method") != expected:
        raise DataError(
            f"{path}: model was written by method {state.get('method')!r}, not {expected!r}"
        )
    return state


def instantiate(state: dict[str, Any]) -> Any:
    """A method of the file's class with the file's options (unknown old options dropped)."""
    from labelfree.methods.registry import get_method_class

    klass = get_method_class(state["method"])
    names = set(klass.option_names())
    return klass.from_params({k: v for k, v in state["params"].items() if k in names})
