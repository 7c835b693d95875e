"""Loading local weight files into backbones: state dicts from checkpoint files, and loading
them into a model that may lack some entries (classifier heads)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_matching_state", "load_weights_file"]


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pt`` / ``.pth`` / ``.bin`` / ``.safetensors`` file.

    Checkpoints that wrap the state dict (``{"state_dict": ...}`` or ``{"model": ...}``) are
    unwrapped. Loading uses ``weights_only=True``: no code in the file is executed.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    obj = torch.load(p, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(obj).__name__}")
    return obj


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``, dropping entries the model lacks (classifier heads).

    A ``module.`` prefix (DataParallel/DDP) is removed; when no key matches as is, a
    ``backbone.`` prefix is removed too, so the backbone of a saved
    :class:`~labelfree.nets.heads.EmbeddingNet` loads directly. Raises when a parameter or buffer
    the model has is missing from the file or has another shape, so a wrong file never
    silently leaves random weights.
    """
    own = model.state_dict()
    state = {_strip_prefix(k, "module."): v for k, v in state.items()}
    if not any(k in own for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    kept = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in kept]
    wrong = [k for k in kept if tuple(kept[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        raise ValueError(
            f"{what}: weights file does not match the architecture "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"wrong shape: {wrong[:5]}{'...' if len(wrong) > 5 else ''})"
        )
    model.load_state_dict(kept)


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key
